"""The data dictionary: one row per published column, in words a reader of the tables needs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from config.settings import INPUT_SPECS, Indicator, IndicatorCatalogue, TicConfig
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

# How the dictionary names each input, and its short name before the year of a layer's vintages
# line: declared with the inputs (config/inputs.yaml).
SOURCE_LABELS = {key: spec.label for key, spec in INPUT_SPECS.items()}
VINTAGE_LABELS = {key: spec.vintage_label for key, spec in INPUT_SPECS.items() if spec.vintage_label}


def vintages_line(vintages: dict[str, str]) -> str:
    return ", ".join(f"{VINTAGE_LABELS.get(k, k)} {v}" for k, v in sorted(vintages.items()))


FIXED = {
    "CODE_IRIS": ("Code IRIS", "Code INSEE de l'IRIS (commune + 4 chiffres), texte", "code", "IGN CONTOURS-IRIS"),
    "NOM_IRIS": ("Nom de l'IRIS", "Libellé de l'IRIS", "texte", "IGN CONTOURS-IRIS"),
    "TYP_IRIS": ("Type d'IRIS", "H habitat, A activité, D divers, Z commune non découpée", "code", "IGN CONTOURS-IRIS"),
    "INSEE_COM": ("Code commune", "Code INSEE de la commune ou de l'arrondissement municipal, texte", "code", "INSEE"),
    "CODGEO": ("Code commune", "Code INSEE de la commune ou de l'arrondissement municipal, texte", "code", "INSEE"),
    "TYPECOM": (
        "Type de commune",
        "COM commune, ARM arrondissement municipal (Paris, Lyon, Marseille : la ville a sa ligne COM, "
        "somme de ses arrondissements ; ne jamais additionner les lignes COM et ARM d'une même ville)",
        "code",
        "INSEE, COG",
    ),
    "COMPARENT": ("Commune parente", "Code de la ville d'un arrondissement municipal, texte", "code", "INSEE, COG"),
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
    "nb_indicateurs_notes": (
        "Nombre d'indicateurs notés",
        "Indicateurs dont le score entre dans les scores d'axe et le score global de cette ligne (les autres "
        "manquent : pas de donnée, ou pas de valeur de référence)",
        "nombre",
        "",
    ),
    "indicateurs_manquants": (
        "Indicateurs manquants",
        "Identifiants, séparés par des virgules, des indicateurs du calcul sans score pour cette ligne ; règle "
        "MedNum 2019 par défaut : les scores d'axe et le score global sont des moyennes des scores disponibles "
        "(config/methods.yaml, completeness)",
        "texte",
        "",
    ),
    **{
        f"n_{axis}": (
            f"Indicateurs notés de l'axe {axis}",
            f"Nombre de scores d'indicateurs dont est fait score_{axis}",
            "nombre",
            "",
        )
        for axis in ("information", "interfaces", "administratif", "numerique")
    },
    "fiabilite": (
        "Fiabilité",
        "faible : moins de 200 habitants par défaut (config/methods.yaml, reliability) ou IRIS de type A "
        "(activité) ou D (divers), dont les taux reposent sur très peu de personnes ; bonne sinon. Les lignes de "
        "fiabilité faible sont publiées mais écartées des IRIS exposés (Opale) par défaut",
        "texte",
        "",
    ),
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


def cog_year(millesime_rp: int) -> int:
    """The year of the commune and IRIS codes: the census of year N is published in the
    geography of 1 January N + 2 (code officiel géographique, COG, of that year)."""
    return int(millesime_rp) + 2


# Columns holding official codes, whose meaning depends on the COG year.
GEO_CODES = ("CODE_IRIS", "INSEE_COM", "CODGEO", "COMPARENT", "EPCI", "DEP")


@dataclass(frozen=True)
class RunContext:
    millesime_rp: int
    vintages: dict[str, str]
    methode: str
    reference: str
    # The offer of mediation (docs/offre.md): the column of the demand, and each filter's values.
    offre_demande: str = ""
    offre_filtres: dict[str, str] = field(default_factory=dict)


PLACES_SOURCE = SOURCE_LABELS["lieux_mediation"]
OFFRE_NOTE = (
    "Distances à vol d'oiseau depuis les immeubles de l'IRIS (ARCEP, pondérés par leurs locaux) ou, sans "
    "immeubles, depuis un point intérieur ; méthode et limites : docs/offre.md."
)
# The places layer (`layers/lieux_mediation`): the national schema's fields.
PLACE_FIELDS = {
    "id": ("Identifiant du lieu", "Identifiant du lieu dans le fichier national (ou la liste locale)", "code"),
    "nom": ("Nom du lieu", "Nom du lieu de médiation numérique", "texte"),
    "commune": ("Commune du lieu", "Commune de l'adresse du lieu", "texte"),
    "code_insee": ("Code commune du lieu", "Code INSEE de la commune du lieu, texte", "code"),
    "typologie": ("Typologie", "Types de structure du schéma national (CCAS, BIB, RFS…), séparés par |", "code"),
    "services": ("Services proposés", "Services de médiation du schéma national, séparés par |", "texte"),
    "publics_specifiquement_adresses": (
        "Publics spécifiquement adressés",
        "Publics auxquels le lieu s'adresse en particulier, séparés par | (vide : tout public)",
        "texte",
    ),
    "dispositif_programmes_nationaux": (
        "Dispositifs nationaux",
        "Programmes nationaux du lieu (Conseillers numériques, France Services, Aidants Connect…), séparés par |",
        "texte",
    ),
    "localisation": (
        "Localisation du lieu",
        "coordonnees : coordonnées WGS84 du fichier ; commune : sans coordonnées utilisables, placé au centre "
        "de population de sa commune (docs/offre.md)",
        "texte",
    ),
    "source": ("Source de la ligne", "Producteur de la ligne dans la consolidation nationale", "texte"),
}


def _offre_row(row: dict, column: str, run: RunContext) -> bool:
    """The words of an offer column (docs/offre.md); False when `column` is not one."""
    filters = "|".join(re.escape(f) for f in run.offre_filtres) or "(?!)"
    if column in PLACE_FIELDS:
        row["libelle"], row["definition"], row["unite"] = PLACE_FIELDS[column]
        row["source"] = PLACES_SOURCE
        return True
    if column == "offre_demande":
        used = f" ; ici {run.offre_demande}" if run.offre_demande else ""
        row.update(
            libelle="Personnes à risque (demande de médiation)",
            definition="P_i de l'accessibilité : la première colonne disponible parmi est_illectronisme_age, "
            f"est_illectronisme_15p, est_illectronisme_non_dipl, puis P_POP{used}",
            unite="personnes (estimation)",
            methode="tic_2019",
        )
    elif m := re.fullmatch(rf"offre_(dist_km|2sfca)(?:_({filters}))?", column):
        kind, name = m.groups()
        among = f" parmi les lieux du filtre « {name} » ({run.offre_filtres[name]})" if name else ""
        if kind == "dist_km":
            row.update(
                libelle="Distance au lieu de médiation le plus proche" + (f" — {name}" if name else ""),
                definition=f"Distance à vol d'oiseau au lieu le plus proche{among}",
                unite="km",
            )
        else:
            row.update(
                libelle="Accessibilité potentielle aux lieux de médiation (2SFCA)" + (f" — {name}" if name else ""),
                definition="Accessibilité à deux étapes (Luo et Wang 2003), décroissance avec la distance comme "
                f"l'accessibilité potentielle localisée de la DREES (config/offre.yaml){among}",
                unite="lieux pour 10 000 personnes à risque",
            )
    elif m := re.fullmatch(r"offre_n_(\d+(?:_\d+)?)km", column):
        radius = m.group(1).replace("_", ",")
        row.update(
            libelle=f"Lieux de médiation à moins de {radius} km",
            definition=f"Nombre de lieux à moins de {radius} km à vol d'oiseau",
            unite="nombre",
        )
    elif column == "classe_fragilite":
        row.update(
            libelle="Classe de fragilité",
            definition="non_fragile, intermediaire, fragile : le score global coupé à deux seuils (quantiles 0,5 "
            "et 0,8 des IRIS du territoire par défaut, config/offre.yaml) ; vide sans score",
            unite="texte",
            methode=run.methode,
        )
    elif column == "classe_accessibilite":
        row.update(
            libelle="Classe d'accessibilité à l'offre",
            definition="eloigne, intermediaire, proche : l'accessibilité 2SFCA coupée à deux seuils (quantiles 0,2 "
            "et 0,5 par défaut) ; un IRIS sans lieu dans son bassin est toujours éloigné",
            unite="texte",
        )
    elif column == "priorite":
        row.update(
            libelle="Priorité (besoins × offre)",
            definition="Croisement des classes de fragilité et d'accessibilité : forte = fragile et éloigné de "
            "l'offre, moyenne = fragile et intermédiaire ou intermédiaire et éloigné, faible sinon ; vide sans classe",
            unite="texte",
        )
    elif m := re.fullmatch(r"(personnes|iris)_priorite_(forte|moyenne|faible)", column):
        what, level = m.groups()
        row.update(
            libelle=f"{'Personnes à risque' if what == 'personnes' else 'IRIS'} en priorité {level}",
            definition=f"Somme de offre_demande des IRIS de l'entité en priorité {level}"
            if what == "personnes"
            else f"Nombre d'IRIS de l'entité en priorité {level}",
            unite="personnes (estimation)" if what == "personnes" else "nombre",
        )
    elif m := re.fullmatch(r"(personnes|iris)_non_classees", column):
        people = m.group(1) == "personnes"
        row.update(
            libelle="Personnes à risque des IRIS sans classe de priorité" if people else "IRIS sans classe de priorité",
            definition="Somme de offre_demande des IRIS sans score ou sans mesure d'accessibilité"
            if people
            else "Nombre d'IRIS de l'entité sans score ou sans mesure d'accessibilité",
            unite="personnes (estimation)" if people else "nombre",
        )
    elif column == "part_personnes_priorite_forte":
        row.update(
            libelle="Part des personnes à risque en priorité forte",
            definition="personnes_priorite_forte / personnes à risque de l'entité (toutes classes)",
            unite="part (0–1)",
        )
    else:
        return False
    row.update(source=f"{PLACES_SOURCE} ; estimations TIC 2019", note=OFFRE_NOTE)
    return True


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
            if column in GEO_CODES:
                year = cog_year(run.millesime_rp)
                row["millesime"] = f"COG {year}"
                row["note"] = f"Géographie au 1er janvier {year} (code officiel géographique {year})."
        elif _offre_row(row, column, run):
            pass
        elif column in AXES:
            row.update(
                libelle=column.replace("_", " "),
                definition=AXES[column],
                unite="indice (100 = référence)",
                methode=run.methode,
                reference=run.reference,
            )
        elif (m := re.match(r"^(.+)_(num|den|taux|score|source|secret|couverture|annee)$", column)) and m.group(
            1
        ) in indicators:
            _indicator_row(row, indicators[m.group(1)], m.group(2), run)
        elif m := re.match(r"^ifn2023_(.+)_note$", column):
            ind = indicators.get(m.group(1))
            row.update(
                libelle=f"Note IFN 2023 : {ind.label if ind else m.group(1)}",
                unite="note 1–10",
                definition="Rang décile parmi les unités de la même maille du calcul (10 = risque le plus élevé), "
                "sur les taux arrondis à 9 chiffres significatifs : des valeurs égales ont la même note",
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
                definition="Vrai si le score pondéré atteint le seuil (110 par défaut) et que la fiabilité est "
                "bonne (les IRIS de fiabilité faible sont écartés par défaut, config/methods.yaml reliability)",
            )
        elif column.startswith("est_"):
            _estimate_row(row, column, tic)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _indicator_row(row: dict, ind: Indicator, part: str, run: RunContext) -> None:
    source = SOURCE_LABELS.get(ind.source, ind.source)
    vintage = run.vintages.get(ind.source, str(run.millesime_rp) if ind.source.startswith("rp_") else "")
    if ind.computation == "arcep_non_thd" and run.vintages.get("arcep_batiments"):
        buildings = f"immeubles {run.vintages['arcep_batiments']}"
        vintage = f"{buildings} ; commune {vintage}" if vintage else buildings
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
            "iris, ou commune quand la valeur vient de la commune ; pour une commune, un EPCI ou un département : "
            "celle de ses IRIS, mixte quand elles diffèrent",
            "texte",
        ),
        "couverture": (
            f"{ind.label} — couverture",
            "Part de la population de l'entité vivant dans des IRIS qui ont une valeur de l'indicateur : le taux "
            "de l'entité ne repose que sur cette part",
            "part (0–1)",
        ),
        "annee": (
            f"{ind.label} — année de la valeur",
            "Année des revenus Filosofi de la valeur (celle de l'IRIS, ou de la commune pour une valeur communale) ; "
            "plusieurs années séparées par des virgules pour une entité qui les mélange",
            "année",
        ),
        "secret": (
            f"{ind.label} — secret statistique",
            "Vrai si l'effectif est sous le seuil du secret statistique : numérateur, dénominateur, taux et "
            "score laissés vides",
            "booléen",
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
    years = {run.vintages.get(k) for k in ("filosofi_iris", "filosofi_communes")} - {None, ""}
    if ind.computation.startswith("filosofi") and len(years) > 1:
        row["note"] += (
            f" Millésimes mélangés : IRIS {run.vintages['filosofi_iris']}, valeurs communales "
            f"{run.vintages['filosofi_communes']} (colonne {ind.id}_annee)."
        )


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
    elif group != "age" and not tic.groups[group].rate_verified(outcome):
        row["note"] += " Taux absent de la publication citée : non vérifié."
    if group != "age" and tic.groups[group].caveat:
        row["note"] += " " + tic.groups[group].caveat


def column_texts(dictionary: pd.DataFrame) -> dict[str, str]:
    """Each column's label — definition (unit), on one line: its description in the Dagster UI."""
    texts = {}
    for row in dictionary.fillna("").itertuples(index=False):
        text = " — ".join(p for p in (row.libelle, row.definition) if p)
        texts[row.code] = f"{text} ({row.unite})" if text and row.unite else text
    return {code: text for code, text in texts.items() if text}


def write_dictionary(frame: pd.DataFrame, path) -> None:
    """CSV UTF-8, `;`, as observatory tools import it."""
    write_csv(frame, path)
