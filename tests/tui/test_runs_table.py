"""The runs table alone: which columns a narrow one shows."""

import time

from textual.app import App, ComposeResult

from podtui.models import LaunchSpec, Run, RunStatus
from podtui.widgets.runs_table import RunsTable


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield RunsTable()


def training(loss: float) -> Run:
    return Run(id="r000000001", name="demo-2077", provider="local", status=RunStatus.training, dataset_id="d",
               spec=LaunchSpec(dataset="demo", gpu_types=["local"], command="true"), created_at=time.time() - 7,
               started_at=time.time() - 7, last_step=19, last_loss=loss, price_per_hour=0.0)


async def test_a_narrow_tables_columns_stay_while_the_loss_changes_width():
    """The $/h column came and went every half second as the loss went from "2.263" to "0.2963" and back."""
    app = TableApp()
    async with app.run_test(size=(63, 10)) as pilot:
        table = app.query_one(RunsTable)
        shown = []
        for loss in (2.263, 0.2963, 2.263, 0.2963):
            table.show([training(loss)], {})
            await pilot.pause()
            shown.append([str(column.label) for column in table.columns.values()])
        assert "$/h" in shown[0] and "$/h" not in shown[1]  # the wider loss leaves it out...
        assert shown[1] == shown[2] == shown[3]  # ...and it does not come back while the table keeps its width
        await pilot.resize_terminal(120, 10)
        await pilot.pause()
        assert len(table.columns) == 11
