"""A model card's policy: the only fixed text in a card. The intended use, what a model's test figures say of it
(the verdict's wording; ``reading.model_fit`` reads the figures), the sentences its limitations are made of (those
about the temperature, the threshold and the test figures composed from what the records hold), the names of the
CLAIM checklist's items (Mongan, Moy and Kahn, Radiology: Artificial Intelligence 2020; 42 items), and the items a
card marks as left to the author whatever the records hold.
"""

from __future__ import annotations

from collections import Counter

CARD_SCHEMA = 1

NOT_RECORDED = "not recorded"
AUTHOR = "to complete by the author"

INTENDED_USE = (
    "Decision support for trained readers of medical images: the model's class probabilities are one input to a "
    "reader's judgement, who remains responsible for the diagnosis. It is not a diagnostic device, has not been "
    "cleared or approved by any regulator, and must not be used to diagnose, triage or treat patients on its own."
)
# What the recorded test figures say of that use (reading.model_fit's status).
FIT_TEXT = {
    "not fit": "This model is not fit for that use: its recorded test performance is degenerate or at chance",
    "not shown": "Nothing recorded shows this model better than chance, so nothing here supports that use",
    "above chance": "The test part's figures put the model above chance (whether enough for that use is for "
    "the reader to judge)",
    "mixed": "The grid's runs differ in what their test figures show (each run's own card, made from its folder, "
    "says it for that run)",
}
LIMITATIONS = (
    "The labels are those of the data as read (folder names or a CSV column); their reference standard, its "
    "errors and the annotators are not recorded here.",
    "Nothing here measures fairness across patient groups, robustness to image artefacts, or the model's effect "
    "on readers' decisions.",
)
TESTED = (
    "The test figures hold for images like the test part's: the same sites, scanners, protocols, population and "
    "label definitions. Performance on other data is unknown until measured there."
)
UNTESTED = "No test figures are recorded: the model's performance is unknown until measured."
CHECK_LOCALLY = "check it on local data before use"

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


# Items the card's policy text can start but the records do not answer: left to the author, with a pointer.
POLICY_STARTS = {
    3: (
        "author",
        "a start: this card's intended use (fixed text: decision support, not diagnosis; and what the "
        "test figures say of it)",
    ),
    38: ("author", "a start: this card's limitations (from the records)"),
}
STATUSES = ("answered", "partly", "not answered", "author")


def claim(answers: dict) -> list[dict]:
    """The 42 CLAIM items, each with its ``status`` and ``where`` from ``answers`` (item number: (status, where));
    an item without an answer is left to the author. Status "not answered": the records hold the item's evidence,
    but it is missing or degenerate (``where`` says why)."""
    items = []
    for number, section, name in CLAIM_ITEMS:
        status, where = answers.get(number, ("author", None))
        items.append({"item": number, "section": section, "name": name, "status": status, "where": where})
    return items


def calibration_limitation(temperature, fit: dict | None) -> str:
    """The limitation of a model's probabilities, from what best.keras records of its temperature."""
    if temperature is None:
        return "No temperature is saved with the model: its probabilities are the softmax's as trained."
    if not fit:
        return (
            f"A temperature ({temperature:.4f}) is saved with the model, but not how or on what it was fitted; "
            f"{CHECK_LOCALLY}."
        )
    text = f"The temperature ({temperature:.4f}) was fitted on {fit.get('fitted_on') or 'data not named'}"
    text += f" ({fit['n']} images)" if fit.get("n") is not None else ""
    train, test = fit.get("train_images"), fit.get("test_images")
    if test:
        return (
            text + f", {test} of them images of the run's test split (--allow-test): calibration figures measured "
            f"on the test part at this temperature are not independent of it; {CHECK_LOCALLY}."
        )
    if train:
        return (
            text + f", {train} of them images of the run's training split: the model is more confident on those, "
            f"so the temperature is likely too low; {CHECK_LOCALLY}."
        )
    if train is None or test is None:
        overlap = "how many of them the run's training and test splits list is not recorded"
    else:
        overlap = "the record counts none of them in the run's training or test split"
    return text + f" ({overlap}): it is only as good as those images are representative; {CHECK_LOCALLY}."


def threshold_limitation(threshold: dict) -> str:
    """The limitation of a model's decisions, from the card's ``threshold`` section."""
    value, chosen_on = threshold.get("value"), threshold.get("chosen_on")
    if value is None:
        n = threshold.get("num_classes")
        if n and n > 2:
            return "Each image is called its most probable class (no threshold): no decision rule was tuned on data."
        return "The operating threshold is not recorded."
    note = threshold.get("calls_note")
    at = f"The threshold {value:.4f} on the probability of {threshold.get('threshold_class')}"
    if chosen_on == "validation":
        text = f"{at} was chosen on the validation part: it is only as good as that part is representative"
    elif chosen_on == "default":
        text = f"{at} is the default, chosen on no data"
    elif chosen_on == "given":
        text = f"{at} was given when the test part was evaluated, not chosen on data by the run"
    else:
        text = f"{at} was chosen on: {chosen_on or 'not recorded'}"
    return text + (f". Degenerate: {note}" if note else "") + f"; {CHECK_LOCALLY}."


def grid_limitations(temperatures: list, chosen_on: Counter, degenerate: int, runs: int) -> list[str]:
    """The limitations a grid's records give: the temperatures its runs' test figures were measured at (None:
    none), where their thresholds were chosen (two classes), and how many call every test image one class."""
    if not runs:
        return [UNTESTED]
    texts = [TESTED]
    fitted = [t for t in temperatures if t is not None]
    if not fitted:
        texts.append("No run records a temperature: the runs' probabilities are the softmax's as trained.")
    else:
        texts.append(
            f"{len(fitted)} of {runs} runs' test figures are at a temperature; how it was fitted is not in the "
            f"grid's records; {CHECK_LOCALLY}."
        )
    if chosen_on:
        where = ", ".join(f"{place or 'not recorded'} ({n} runs)" for place, n in sorted(chosen_on.items(), key=str))
        text = f"The runs' thresholds were chosen on: {where}"
        if degenerate:
            text += f"; at {degenerate} runs' thresholds every test image is called one class"
        texts.append(text + "; check them on local data before use.")
    return texts


def intended_use(fit: dict, limitations: list[str] | tuple = ()) -> dict:
    """The card's ``intended_use`` section: the use (fixed text), what the test figures say of it (``fit``, from
    ``reading.model_fit``: status and because, with ``text``), and the limitations: those the records give,
    then the fixed ones."""
    fit = {**fit, "text": FIT_TEXT[fit["status"]]}
    return {"use": INTENDED_USE, "fit": fit, "limitations": [*limitations, *LIMITATIONS]}
