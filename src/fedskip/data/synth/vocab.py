"""Non-lexicon vocabulary: abbreviations, misspellings, span modifiers, distractors, ICD-9 codes.

Everything here is data; the generator's behaviour lives in ``text.py`` and ``templates.py``.
"""

from __future__ import annotations

from fedskip.data.synth.lexicon import split_terms

ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    # problems
    "congestive heart failure": ("chf",),
    "coronary artery disease": ("cad",),
    "atrial fibrillation": ("afib", "af", "a-fib", "a fib"),
    "atrial flutter": ("aflutter", "a flutter"),
    "hypertension": ("htn",),
    "hyperlipidemia": ("hld",),
    "diabetes mellitus": ("dm",),
    "type 2 diabetes mellitus": ("dm2", "t2dm", "niddm", "dm type 2"),
    "type 1 diabetes mellitus": ("dm1", "iddm"),
    "chronic obstructive pulmonary disease": ("copd",),
    "myocardial infarction": ("mi",),
    "non-st elevation myocardial infarction": ("nstemi",),
    "st elevation myocardial infarction": ("stemi",),
    "chronic kidney disease": ("ckd",),
    "end stage renal disease": ("esrd",),
    "acute kidney injury": ("aki",),
    "acute renal failure": ("arf",),
    "urinary tract infection": ("uti",),
    "deep venous thrombosis": ("dvt",),
    "pulmonary embolism": ("pe",),
    "shortness of breath": ("sob",),
    "dyspnea on exertion": ("doe",),
    "gastroesophageal reflux disease": ("gerd",),
    "altered mental status": ("ams",),
    "upper gi bleed": ("ugib",),
    "lower gi bleed": ("lgib",),
    "gastrointestinal bleeding": ("gib", "gi bleed"),
    "acute respiratory distress syndrome": ("ards",),
    "benign prostatic hypertrophy": ("bph",),
    "obstructive sleep apnea": ("osa",),
    "transient ischemic attack": ("tia",),
    "stroke": ("cva",),
    "diabetic ketoacidosis": ("dka",),
    "non-small cell lung cancer": ("nsclc",),
    "small cell lung cancer": ("sclc",),
    "acute myeloid leukemia": ("aml",),
    "chronic lymphocytic leukemia": ("cll",),
    "hepatocellular carcinoma": ("hcc",),
    "renal cell carcinoma": ("rcc",),
    "diffuse large b-cell lymphoma": ("dlbcl",),
    "tumor lysis syndrome": ("tls",),
    "disseminated intravascular coagulation": ("dic",),
    "jugular venous distension": ("jvd",),
    "paroxysmal nocturnal dyspnea": ("pnd",),
    "peripheral vascular disease": ("pvd",),
    "abdominal aortic aneurysm": ("aaa",),
    "left ventricular hypertrophy": ("lvh",),
    "chest pain": ("cp",),
    "abdominal pain": ("abd pain",),
    "lower extremity edema": ("le edema", "lle edema"),
    "ventricular tachycardia": ("vt", "v-tach", "vtach"),
    "ventricular fibrillation": ("vf", "v-fib"),
    "subarachnoid hemorrhage": ("sah",),
    "intracranial hemorrhage": ("ich",),
    "subdural hematoma": ("sdh",),
    "clostridium difficile infection": ("cdi", "c diff"),
    "spontaneous bacterial peritonitis": ("sbp",),
    "hepatitis c": ("hcv",),
    "small bowel obstruction": ("sbo",),
    "rapid ventricular response": ("rvr",),
    "urosepsis": ("uro-sepsis",),
    "premature ventricular contractions": ("pvcs",),
    "nonsustained ventricular tachycardia": ("nsvt",),
    "bright red blood per rectum": ("brbpr",),
    "acute tubular necrosis": ("atn",),
    # tests
    "chest x-ray": ("cxr",),
    "electrocardiogram": ("ekg", "ecg"),
    "transthoracic echocardiogram": ("tte",),
    "transesophageal echocardiogram": ("tee",),
    "echocardiogram": ("echo",),
    "white blood cell count": ("wbc", "white count"),
    "hemoglobin": ("hgb",),
    "hematocrit": ("hct",),
    "platelets": ("plt", "plts"),
    "arterial blood gas": ("abg",),
    "venous blood gas": ("vbg",),
    "liver function tests": ("lfts",),
    "urinalysis": ("ua", "u/a"),
    "hemoglobin a1c": ("hba1c", "a1c"),
    "blood pressure": ("bp",),
    "heart rate": ("hr",),
    "respiratory rate": ("rr",),
    "temperature": ("temp", "t"),
    "oxygen saturation": ("o2 sat", "spo2", "sats", "o2 sats"),
    "ejection fraction": ("ef",),
    "potassium": ("k",),
    "sodium": ("na",),
    "creatinine": ("cr",),
    "magnesium": ("mg",),
    "phosphorus": ("phos",),
    "bicarbonate": ("hco3", "bicarb"),
    "lactate": ("lactic",),
    "alkaline phosphatase": ("alk phos",),
    "total bilirubin": ("t bili", "tbili"),
    "blood urea nitrogen": ("bun",),
    "head ct": ("ct head",),
    "cardiac catheterization": ("cardiac cath", "cath"),
    "nuclear stress test": ("mibi",),
    "pulmonary function tests": ("pfts",),
    "lumbar puncture": ("lp",),
    "bronchoalveolar lavage": ("bal",),
    "blood cultures": ("bcx", "blood cx"),
    "urine culture": ("ucx", "urine cx"),
    "comprehensive metabolic panel": ("cmp",),
    "basic metabolic panel": ("bmp",),
    # treatments
    "packed red blood cells": ("prbcs", "prbc"),
    "fresh frozen plasma": ("ffp",),
    "percutaneous coronary intervention": ("pci",),
    "coronary artery bypass graft": ("cabg",),
    "iv fluids": ("ivf",),
    "normal saline": ("ns",),
    "nitroglycerin": ("ntg", "nitro"),
    "aspirin": ("asa",),
    "hydrochlorothiazide": ("hctz",),
    "piperacillin-tazobactam": ("pip-tazo", "zosyn"),
    "hemodialysis": ("hd",),
    "mechanical ventilation": ("mv",),
    "total hip replacement": ("thr",),
    "total knee replacement": ("tkr",),
    "physical therapy": ("pt",),
    "occupational therapy": ("ot",),
    "radiation therapy": ("xrt",),
    "whole brain radiation": ("wbrt",),
    "norepinephrine": ("levo",),
    "insulin sliding scale": ("riss", "ssi"),
    "total parenteral nutrition": ("tpn",),
    "intra-aortic balloon pump": ("iabp",),
    "external ventricular drain": ("evd",),
    "transjugular intrahepatic portosystemic shunt": ("tips",),
    "potassium chloride": ("kcl",),
    "sequential compression devices": ("scds", "pneumoboots"),
    "dvt prophylaxis": ("dvt ppx",),
    "continuous renal replacement therapy": ("crrt",),
    "levetiracetam": ("keppra",),
    "acetaminophen": ("apap",),
    "morphine": ("ms04", "mso4"),
    "dexamethasone": ("dex",),
}
"""Full form → abbreviations a site may write instead (rate set per site)."""

MISSPELLINGS: dict[str, tuple[str, ...]] = {
    "pneumonia": ("pnuemonia", "pneumonie"),
    "diarrhea": ("diarrhoea", "diarhea"),
    "hemorrhage": ("hemorrage", "haemorrhage"),
    "anemia": ("anaemia",),
    "edema": ("oedema", "edma"),
    "tachycardia": ("tachycardai", "tachicardia"),
    "hypertension": ("hypertention",),
    "hyperlipidemia": ("hyperlipidaemia", "hyperlipdemia"),
    "fibrillation": ("fibrilation",),
    "pancreatitis": ("pancreatits",),
    "cellulitis": ("celulitis",),
    "furosemide": ("furosemid", "frusemide"),
    "metoprolol": ("metoprolo", "metaprolol"),
    "vancomycin": ("vancomycine", "vanco"),
    "acetaminophen": ("acetaminophin",),
    "ceftriaxone": ("ceftriaxon", "cefriaxone"),
    "hemoglobin": ("haemoglobin", "hemoglobn"),
    "echocardiogram": ("echocardiagram",),
    "colonoscopy": ("colonscopy",),
    "thrombocytopenia": ("thrombocytopaenia", "thrombocytopnia"),
    "leukocytosis": ("leucocytosis",),
    "ischemic": ("ischaemic",),
    "esophageal": ("oesophageal",),
    "dyspnea": ("dyspnoea", "dyspnia"),
    "nausea": ("nasuea",),
    "warfarin": ("warfarine",),
    "insulin": ("insuline",),
    "arrhythmia": ("arrythmia",),
    "bilateral": ("bilat",),
}
"""Known real-world misspellings; other words get random typos (see ``text.typo``)."""

PROBLEM_PREFIXES = split_terms(
    """
acute|chronic|severe|mild|moderate|worsening|new|recurrent|acute on chronic|progressive
|symptomatic|persistent|intermittent|bilateral|left|right|poorly controlled|uncontrolled
|stable|new onset|significant|small|large|mild to moderate|refractory|resolving
"""
)
"""Words i2b2 keeps inside a problem span (``c="severe chest pain"``)."""

LOCATIONS = split_terms(
    """
left|right|bilateral|left lower extremity|right lower extremity|left upper extremity
|right upper lobe|left lower lobe|right lower lobe|lumbar|sacral|left hip|right knee
|substernal|epigastric|right upper quadrant|left sided|right sided|perirectal|occipital
|frontal|lower extremity|chest wall|left breast|abdominal
"""
)
"""Body locations that i2b2 keeps inside a problem span (``c="left lower extremity edema"``)."""
LOCATIONS_START = split_terms(
    """
left|right|bilateral|lower|upper|chest|abdominal|back
"""
)
LOCATABLE = frozenset(
    [
        "pain",
        "fracture",
        "edema",
        "cellulitis",
        "ulcer",
        "mass",
        "nodule",
        "effusion",
        "infiltrate",
        "weakness",
        "thrombosis",
        "hematoma",
        "abscess",
        "wound",
        "pneumonia",
        "opacity",
        "lesion",
        "lesions",
        "stenosis",
        "tenderness",
        "swelling",
        "numbness",
        "dvt",
        "hemorrhage",
        "infarct",
        "erythema",
        "rash",
    ]
)

ANATOMY = split_terms(
    """
chest|abdomen|abdomen and pelvis|head|brain|neck|c-spine|lumbar spine|thoracic spine
|left knee|right hip|pelvis|left lower extremity|right upper extremity|kidneys|liver
|gallbladder|carotids|heart|sinuses|left shoulder|right ankle|orbits|soft tissue neck
|bilateral lower extremities|left foot|right wrist|l-spine
"""
)
"""Body parts written after a test modality or a problem (``ct of the abdomen and pelvis``)."""
MODALITIES = frozenset(
    (
        "ct",
        "ct scan",
        "mri",
        "ultrasound",
        "x-ray",
        "plain films",
        "doppler ultrasound",
        "mra",
        "cta",
        "imaging",
        "pet scan",
        "bone scan",
        "dopplers",
        "cxr",
        "radiograph",
        "films",
        "ct angiogram",
    )
)
SIZEABLE = frozenset(
    [
        "mass",
        "nodule",
        "lesion",
        "lesions",
        "ulcer",
        "hematoma",
        "abscess",
        "aneurysm",
        "stone",
        "effusion",
        "polyp",
    ]
)
STAGEABLE = frozenset(
    ["cancer", "carcinoma", "lymphoma", "melanoma", "myeloma", "adenocarcinoma", "leukemia"]
)
DRUG_FORMS = split_terms(
    """
drip|gtt|taper|infusion|nebs|patch|tablets|challenge|load|bolus
"""
)
"""Words i2b2 keeps inside a treatment span after the drug (``c="heparin drip"``)."""

NON_PREFIXABLE = split_terms(
    """
e. coli|mrsa|vre|hiv|aids|yeast|murmurs|rubs|gallops
"""
)

DETERMINERS = split_terms(
    """
a|the|his|her|any|some|this|their
"""
)
"""Determiners and possessives that i2b2 keeps inside a span (``c="her chest pain"``)."""

TREATMENT_PREFIXES = split_terms(
    """
iv|po|oral|home|prophylactic|empiric|subcutaneous|low dose|high dose|standing|prn|scheduled
|topical|inhaled
"""
)

TEST_PREFIXES = split_terms(
    """
repeat|serial|follow-up|admission|outpatient|portable|daily|baseline|a.m.|morning|bedside
"""
)

DOSE_UNITS = split_terms(
    """
mg|mg|mg|mg|mg|mcg|units|g|meq|ml
"""
)
ROUTES = split_terms(
    """
po|iv|sc|sq|im|sl|pr|inh|ng|po/ng
"""
)
FREQUENCIES = split_terms(
    """
daily|bid|tid|qid|qhs|q4h|q6h|q8h|q12h|prn|qam|once daily|twice daily|every other day|qod
|q4-6h prn|weekly
"""
)
DOSE_FORMS = split_terms(
    """
tablet|capsule|tablet , delayed release ( e.c. )|solution|puff|patch
|tablet sustained release|recon soln|syringe
"""
)

SERVICES = split_terms(
    """
cardiology|oncology|the micu|the ccu|the sicu|medicine|renal|nephrology|neurology|gi
|hepatology|ct surgery|vascular surgery|the pain service|palliative care service|social work
|case management|the dialysis unit|the cath lab|the echo lab|the anticoagulation clinic
|the floor|the ed|rehab|the step down unit|ortho|id|pulmonary|the heart failure service
|the stroke team|the diabetes clinic|the chf clinic|the sepsis team|the transplant team
|the pain clinic|the liver service|the copd clinic|the anemia clinic|the hypertension clinic
|cardiac surgery|the oncology floor|the breast cancer clinic|the asthma clinic
|the wound care nurse|the seizure service|the tb clinic|the hiv clinic|the coumadin clinic
"""
)
"""Consult services and places: medical words that are not entities (``ct surgery``)."""

SURNAMES = split_terms(
    """
smith|nguyen|patel|garcia|kim|cohen|obrien|williams|chen|rossi|murphy|schmidt|levine|okafor
|hernandez|shapiro|morales|sullivan|gupta|tanaka|brown|walsh|friedman|silva|larsen
"""
)

HOSPITALS = split_terms(
    """
[**hospital1 18**]|[**hospital 1474**]|an outside hospital|osh|[**hospital3 4107**]|rehab
|her nursing home|his nursing home|the osh
"""
)

NON_ENTITY_FILLERS = split_terms(
    """
the patient was seen and examined|case discussed with the attending|full code|dnr/dni
|code status confirmed|patient and family agree with plan|please see omr for details
|will continue to monitor|tolerating regular diet|ambulating without assistance
|afebrile overnight|hemodynamically stable|no acute events overnight
|seen by pt who recommends home|lines and tubes reviewed|questions answered
|disposition pending|plan discussed with family meeting|pt resting comfortably|a&ox3|a&o x3
|alert and oriented x 3|nad|within normal limits|unremarkable|stable|at baseline|improving
|unchanged
"""
)
