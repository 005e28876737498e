"""The data dictionary: one row per published column, in words a reader of the tables needs."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from config.settings import Indicator, IndicatorCatalogue, TicConfig
from outputs.tables import write_csv

COLUMNS = (
    "code",
    "libelle",
    "definition",
    "unite",
    "source",
    "millesime",
    "maille_source",
    "methode",
    "reference",
    "note",
)

SOURCE_LABELS = {
    "rp_evol_struct_pop": "INSEE, recensement (RP), base infracommunale évolution et structure de la population",
    "rp_diplomes_formation": "INSEE, recensement (RP), base infracommunale diplômes – formation",
    "rp_couples_familles_menages": "INSEE, recensement (RP), base infracommunale couples – familles – ménages",
    "rp_activite_residents": "INSEE, recensement (RP), base infracommunale activité des résidents",
    "filosofi_iris": "INSEE-DGFiP-Cnaf-Cnav-CCMSA, Filosofi (IRIS, sinon commune)",
    "arcep_debit": "ARCEP, Ma connexion internet (commune)",
    "arcep_4g": "ARCEP, couverture mobile 4G (commune)",
    "caf_non_connectes": "CAF, allocataires non connectés",
}
# Short names of the sources whose year or date a layer records.
VINTAGE_LABELS = {
    "filosofi_iris": "Filosofi IRIS",
    "filosofi_communes": "Filosofi communes",
    "arcep_debit": "ARCEP Ma connexion internet",
}


def vintages_line(vintages: dict[str, str]) -> str:
    return ", ".join(f"{VINTAGE_LABELS.get(k, k)} {v}" for k, v in sorted(vintages.items()))


FIXED = {
    "CODE_IRIS": ("Code IRIS", "Code INSEE de l'IRIS (commune + 4 chiffres), texte", "code", "IGN CONTOURS-IRIS"),
    "NOM_IRIS": ("Nom de l'IRIS", "Libellé de l'IRIS", "texte", "IGN CONTOURS-IRIS"),
    "TYP_IRIS": ("Type d'IRIS", "H habitat, A activité, D divers, Z commune non découpée", "code", "IGN CONTOURS-IRIS"),
    "INSEE_COM": ("Code commune", "Code INSEE de la commune ou de l'arrondissement municipal, texte", "code", "INSEE"),
    "NOM_COM": ("Nom de la commune", "Libellé de la commune ou de l'arrondissement", "texte", "INSEE"),
    "EPCI": ("Code EPCI", "Numéro SIREN de l'EPCI, texte", "code", "INSEE, intercommunalités"),
    "NOM_EPCI": ("Nom de l'EPCI", "Libellé de l'EPCI", "texte", "INSEE, intercommunalités"),
    "DEP": ("Code département", "Code INSEE du département (2A, 2B, 971…), texte", "code", "INSEE"),
    "NOM_DEP": ("Nom du département", "Libellé du département", "texte", "INSEE"),
    "methode": ("Méthode", "Méthode des colonnes score_*", "texte", ""),
    "reference": ("Référence", "Territoire de référence des scores (100 = comme la référence)", "texte", ""),
    "millesime_rp": ("Millésime du recensement", "Année du recensement des effectifs", "année", "INSEE"),
    "P_POP": ("Population", "Population municipale du recensement", "personnes", "INSEE, RP"),
    "n_iris": ("Nombre d'IRIS", "IRIS réunis dans l'entité", "nombre", ""),
    "non_residentiel": (
        "IRIS sans habitants",
        "Vrai si la population est nulle : pas de score",
        "booléen",
        "INSEE, RP",
    ),
}
AXES = {
    "score_information": "Axe accès à l'information : moyenne des scores de ses indicateurs",
    "score_interfaces": "Axe accès aux interfaces numériques : moyenne des scores de ses indicateurs",
    "score_administratif": "Axe compétences administratives : moyenne des scores de ses indicateurs",
    "score_numerique": "Axe compétences numériques / scolaires : moyenne des scores de ses indicateurs",
    "score_acces": "ACCÈS : moyenne groupée des scores des axes information et interfaces",
    "score_competences": "COMPÉTENCES : moyenne groupée des scores des axes administratif et numérique",
    "score_global": "Score global : moyenne de tous les scores d'indicateurs disponibles",
}
OVERLAP = "Les groupes se recouvrent (une personne peut être âgée, seule et peu diplômée) : ne jamais additionner les colonnes est_*."


@dataclass(frozen=True)
class RunContext:
    millesime_rp: int
    vintages: dict[str, str]
    methode: str
    reference: str


def data_dictionary(columns: list[str], catalogue: IndicatorCatalogue, tic: TicConfig, run: RunContext) -> pd.DataFrame:
    """A row for every column of a layer (geometry aside), in the layer's order."""
    indicators = catalogue.by_id()
    rows = []
    for column in columns:
        if column in ("geometry", "bbox"):
            continue
        row = dict.fromkeys(COLUMNS, "")
        row["code"] = column
        if column in FIXED:
            row["libelle"], row["definition"], row["unite"], row["source"] = FIXED[column]
            row["millesime"] = str(run.millesime_rp) if row["source"].startswith("INSEE, RP") else ""
        elif column in AXES:
            row.update(
                libelle=column.replace("_", " "),
                definition=AXES[column],
                unite="indice (100 = référence)",
                methode=run.methode,
                reference=run.reference,
            )
        elif (m := re.match(r"^(.+)_(num|den|taux|score|source)$", column)) and m.group(1) in indicators:
            _indicator_row(row, indicators[m.group(1)], m.group(2), run)
        elif m := re.match(r"^ifn2023_(.+)_note$", column):
            ind = indicators.get(m.group(1))
            row.update(
                libelle=f"Note IFN 2023 : {ind.label if ind else m.group(1)}",
                unite="note 1–10",
                definition="Rang décile parmi les IRIS de l'univers (10 = risque le plus élevé)",
                methode="ifn_2023",
            )
        elif m := re.match(r"^ifn2023_(?:(.+)_)?score$", column):
            row.update(
                libelle=f"Indice IFN 2023{' ' + m.group(1) if m.group(1) else ''}",
                unite="note 1–10",
                definition="Moyenne non pondérée des notes des indicateurs de l'ensemble",
                methode="ifn_2023",
            )
        elif column == "opale_score":
            row.update(
                libelle="Score pondéré type Opale",
                unite="indice (100 = territoire d'étude)",
                definition="Moyenne pondérée des moyennes d'axes, référence = territoire d'étude",
                methode="opale_2022",
                reference="territoire",
            )
        elif column == "opale_expose":
            row.update(
                libelle="IRIS exposé (Opale)",
                unite="booléen",
                methode="opale_2022",
                definition="Vrai si le score pondéré atteint le seuil (110 par défaut)",
            )
        elif column.startswith("est_"):
            _estimate_row(row, column, tic)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _indicator_row(row: dict, ind: Indicator, part: str, run: RunContext) -> None:
    source = SOURCE_LABELS.get(ind.source, ind.source)
    vintage = run.vintages.get(ind.source, str(run.millesime_rp) if ind.source.startswith("rp_") else "")
    coarse = ind.computation.startswith(("arcep", "filosofi"))
    texts = {
        "num": (f"{ind.label} — numérateur", "Effectif au numérateur (somme pour une maille agrégée)", "effectif"),
        "den": (f"{ind.label} — dénominateur", "Effectif au dénominateur", "effectif"),
        "taux": (ind.label, "Numérateur / dénominateur", "euros" if ind.unit == "euros" else "part (0–1)"),
        "score": (
            f"{ind.label} — score MedNum",
            "100 × taux / taux de référence"
            + (" (inversé : plus haut = moins fragile)" if ind.higher_is_better else ""),
            "indice (100 = référence)",
        ),
        "source": (
            f"{ind.label} — maille de la valeur",
            "iris, ou commune quand la valeur vient de la commune",
            "texte",
        ),
    }
    row["libelle"], row["definition"], row["unite"] = texts[part]
    row.update(
        source=source,
        millesime=vintage,
        maille_source="commune"
        if ind.computation.startswith("arcep")
        else ("IRIS, sinon commune" if coarse else "IRIS"),
    )
    if part == "score":
        row.update(methode=run.methode, reference=run.reference)
    if coarse:
        row["note"] = "Valeurs communales données aux IRIS signalées dans la colonne <id>_source."


def _estimate_row(row: dict, column: str, tic: TicConfig) -> None:
    body = column[len("est_") :]
    for outcome, label in tic.outcomes.items():  # noqa: B007 - label is used after the loop
        if body.startswith(outcome + "_"):
            group = body[len(outcome) + 1 :]
            break
    else:
        return
    if group == "age":
        bands = tic.age_bands
        row.update(
            libelle=f"{label} — total par tranches d'âge",
            source=bands.source,
            definition="Σ taux par tranche d'âge × effectif de la tranche",
        )
    else:
        g = tic.groups[group]
        row.update(
            libelle=f"{label} — {g.label}",
            source=g.source,
            definition=f"Taux national TIC 2019 ({g.rates[outcome]:.1%}) × effectif du groupe ({g.count})",
        )
    row.update(unite="personnes (estimation)", methode="tic_2019", millesime="2019", note=OVERLAP)
    if group == "age" and not tic.age_bands.verified or group != "age" and not tic.groups[group].verified:
        row["note"] += " Taux de source secondaire, non vérifiés."


def write_dictionary(frame: pd.DataFrame, path) -> None:
    """CSV UTF-8, `;`, as observatory tools import it."""
    write_csv(frame, path)
