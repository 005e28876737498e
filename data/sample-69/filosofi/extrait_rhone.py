"""Make the Rhône extract of INSEE's Filosofi 2017 IRIS workbook (run by hand, once).

    python data/sample-69/filosofi/extrait_rhone.py

The embedded sample reads `BASE_TD_FILO_DISP_IRIS_2017_dep69.xlsx`: the whole-France workbook
(`BASE_TD_FILO_DISP_IRIS_2017.xlsx`, unmodified, kept for the reader's tests) cut to the IRIS of
the Rhône, so that the sample run does not load 12,345 IRIS to keep 433. Every sheet is kept, in
the same order and under the same names; in `IRIS_DISP`, the four title rows, the row of labels
and the row of variable codes, then the rows whose IRIS code starts with 69. Cell values and
types are copied as they are (codes as text, figures as numbers, `s`/`nd` markers as text, empty
cells empty); the formatting is not.
"""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook, load_workbook

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "BASE_TD_FILO_DISP_IRIS_2017.xlsx"
TARGET = HERE / "BASE_TD_FILO_DISP_IRIS_2017_dep69.xlsx"
DATA_SHEET, HEADER_ROWS, DEPARTEMENT = "IRIS_DISP", 6, "69"


def main() -> None:
    source = load_workbook(SOURCE, read_only=True, data_only=True)
    target = Workbook()
    target.remove(target.active)
    for sheet in source.worksheets:
        copy = target.create_sheet(sheet.title)
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            code = row[0] if row else None
            if sheet.title != DATA_SHEET or number <= HEADER_ROWS or str(code or "").startswith(DEPARTEMENT):
                copy.append(list(row))
    target.save(TARGET)
    print(f"{TARGET.name} écrit")


if __name__ == "__main__":
    main()
