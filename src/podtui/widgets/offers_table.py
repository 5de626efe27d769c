"""GPU offers with live prices and stock; several can be picked, in fallback order."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ..models import GpuOffer
from .keys import bindings

COLUMNS = ("pick", "gpu", "vram", "secure $/h", "community $/h", "spot $/h", "stock")


def _price(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _stock(offer: GpuOffer) -> Text:
    return Text(offer.stock or "-", "green" if offer.stock == "High" else "yellow")


class OffersTable(DataTable[str | Text]):
    """Space picks or unpicks the offer under the cursor; picks are tried in the order made."""

    BINDINGS = bindings("offers")
    DEFAULT_CSS = """
    OffersTable { height: auto; max-height: 10; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row")
        self.offers: list[GpuOffer] = []
        self.picked: list[str] = []

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column, key=column)
        self.border_title = "GPU types (space picks, in fallback order)"

    def show(self, offers: list[GpuOffer], preselect: list[str] | None = None) -> None:
        """Fill the table; preselect ids (e.g. the only offer)."""
        self.offers = offers
        self.clear()
        self.picked = [o for o in (preselect or []) if any(x.id == o for x in offers)]
        for offer in offers:
            vram = "-" if offer.vram_gb is None else f"{offer.vram_gb:g} GB"
            self.add_row(self._pick_label(offer.id), offer.name, vram, _price(offer.secure_price),
                         _price(offer.community_price), _price(offer.spot_price), _stock(offer), key=offer.id)

    def restock(self, offers: list[GpuOffer]) -> None:
        """New stock figures (another cloud type or GPU count) for the offers shown; the picks stay."""
        fresh = {o.id: o for o in offers}
        for offer in self.offers:
            if offer.id in fresh:
                self.update_cell(offer.id, "stock", _stock(fresh[offer.id]))
        self.offers = [fresh.get(o.id, o) for o in self.offers]

    def _pick_label(self, offer_id: str) -> str:
        return f"[{self.picked.index(offer_id) + 1}]" if offer_id in self.picked else "[ ]"

    def action_toggle_pick(self) -> None:
        """Pick or unpick the offer under the cursor."""
        if not self.offers:
            return
        offer_id = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        if offer_id is None:
            return
        if offer_id in self.picked:
            self.picked.remove(offer_id)
        else:
            self.picked.append(offer_id)
        for offer in self.offers:
            self.update_cell(offer.id, "pick", self._pick_label(offer.id))
