"""A model card's policy: the only fixed text in a card. The intended use and its limits, the names of the CLAIM
checklist's items (Mongan, Moy and Kahn, Radiology: Artificial Intelligence 2020; 42 items), and the items a card
marks as left to the author whatever the records hold.
"""

from __future__ import annotations

CARD_SCHEMA = 1

NOT_RECORDED = "not recorded"
AUTHOR = "to complete by the author"

INTENDED_USE = (
    "Decision support for trained readers of medical images: the model's class probabilities are one input to a "
    "reader's judgement, who remains responsible for the diagnosis. It is not a diagnostic device, has not been "
    "cleared or approved by any regulator, and must not be used to diagnose, triage or treat patients on its own."
)
LIMITATIONS = (
    "The figures below hold for images like the test part's: the same sites, scanners, protocols, population and "
    "label definitions. Performance on other data is unknown until measured there.",
    "The labels are those of the data as read (folder names or a CSV column); their reference standard, its "
    "errors and the annotators are not recorded here.",
    "A threshold chosen on the validation part and a temperature fitted on it are only as good as that part is "
    "representative; check them on local data before use.",
    "Nothing here measures fairness across patient groups, robustness to image artefacts, or the model's effect "
    "on readers' decisions.",
)

# CLAIM: Checklist for Artificial Intelligence in Medical Imaging (Mongan, Moy, Kahn; Radiol Artif Intell 2020).
CLAIM_ITEMS = (
    (1, "Title / Abstract", "Identification as a study of AI methodology, with the category of technology"),
    (2, "Title / Abstract", "Structured summary of study design, methods, results and conclusions"),
    (3, "Introduction", "Scientific and clinical background, intended use and clinical role of the AI approach"),
    (4, "Introduction", "Study objectives and hypotheses"),
    (5, "Methods: study design", "Prospective or retrospective study"),
    (6, "Methods: study design", "Study goal (model creation, exploratory, feasibility, non-inferiority, ...)"),
    (7, "Methods: data", "Data sources"),
    (8, "Methods: data", "Eligibility criteria: how, where and when participants or studies were identified"),
    (9, "Methods: data", "Data pre-processing steps"),
    (10, "Methods: data", "Selection of data subsets, if applicable"),
    (11, "Methods: data", "Definitions of data elements, with references to common data elements"),
    (12, "Methods: data", "De-identification methods"),
    (13, "Methods: data", "How missing data were handled"),
    (14, "Methods: ground truth", "Definition of the ground truth reference standard, in detail for replication"),
    (15, "Methods: ground truth", "Rationale for choosing the reference standard"),
    (16, "Methods: ground truth", "Source of ground-truth annotations; qualifications and preparation of annotators"),
    (17, "Methods: ground truth", "Annotation tools"),
    (18, "Methods: ground truth", "Inter- and intrarater variability; how variability and discrepancies were handled"),
    (19, "Methods: data partitions", "Intended sample size and how it was determined"),
    (20, "Methods: data partitions", "How data were assigned to partitions; proportions"),
    (21, "Methods: data partitions", "Level at which partitions are disjoint (image, study, patient, institution)"),
    (22, "Methods: model", "Detailed description of the model: inputs, outputs, intermediate layers and connections"),
    (23, "Methods: model", "Software libraries, frameworks and packages"),
    (24, "Methods: model", "Initialization of model parameters (randomization, transfer learning)"),
    (25, "Methods: training", "Training approach: data augmentation, hyperparameters, number of models trained"),
    (26, "Methods: training", "Method of selecting the final model"),
    (27, "Methods: training", "Ensembling techniques, if applicable"),
    (28, "Methods: evaluation", "Metrics of model performance"),
    (29, "Methods: evaluation", "Statistical measures of significance and uncertainty (e.g. confidence intervals)"),
    (30, "Methods: evaluation", "Robustness or sensitivity analysis"),
    (31, "Methods: evaluation", "Methods for explainability or interpretability, and how they were validated"),
    (32, "Methods: evaluation", "Validation or testing on external data"),
    (33, "Results: data", "Flow of participants or cases (a diagram of inclusion and exclusion)"),
    (34, "Results: data", "Demographic and clinical characteristics of cases in each partition"),
    (35, "Results: model performance", "Performance metrics for the optimal model(s) on all data partitions"),
    (36, "Results: model performance", "Estimates of diagnostic accuracy and their precision (e.g. 95% CIs)"),
    (37, "Results: model performance", "Failure analysis of incorrectly classified cases"),
    (38, "Discussion", "Study limitations: potential bias, statistical uncertainty, generalizability"),
    (39, "Discussion", "Implications for practice, including the intended use and clinical role"),
    (40, "Other information", "Registration number and name of registry"),
    (41, "Other information", "Where the full study protocol can be accessed"),
    (42, "Other information", "Sources of funding and other support; role of funders"),
)


# Items the card's fixed policy text can start but the records do not answer: left to the author, with a pointer.
POLICY_STARTS = {
    3: ("author", "a start: this card's intended use (fixed text: decision support, not diagnosis)"),
    38: ("author", "a start: this card's limitations (fixed text)"),
}


def claim(answers: dict) -> list[dict]:
    """The 42 CLAIM items, each with its ``status`` and ``where`` from ``answers`` (item number: (status, where));
    an item without an answer is left to the author."""
    items = []
    for number, section, name in CLAIM_ITEMS:
        status, where = answers.get(number, ("author", None))
        items.append({"item": number, "section": section, "name": name, "status": status, "where": where})
    return items


def intended_use() -> dict:
    """The card's ``intended_use`` section: the use and its limitations (fixed text)."""
    return {"use": INTENDED_USE, "limitations": list(LIMITATIONS)}
