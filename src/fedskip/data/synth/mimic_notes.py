"""MIMIC-III-style notes for the classification corpus, one builder per NOTEEVENTS category.

Each category has its own layout and vocabulary (radiology reports, ECG reads, echo reports,
nursing and physician progress notes, respiratory care notes), but they share clinical terms and
some overlap on purpose (nursing vs. nursing/other vs. physician notes), so the category label is
learnable without being trivial. Discharge summaries reuse :func:`notes.discharge_summary`.
"""

from __future__ import annotations

import re

from fedskip.data.synth.notes import discharge_summary
from fedskip.data.synth.slots import render
from fedskip.data.synth.text import Line, NoteContext, Seg, apply_casing

RADIOLOGY_EXAMS = (
    "CHEST (PORTABLE AP)",
    "CHEST (PA & LAT)",
    "CT HEAD W/O CONTRAST",
    "CT ABDOMEN W/CONTRAST",
    "CT CHEST W/CONTRAST",
    "MR HEAD W & W/O CONTRAST",
    "RENAL U.S.",
    "LIVER OR GALLBLADDER US (SINGLE ORGAN)",
    "CTA CHEST W&W/O C&RECONS, NON-CORONARY",
    "BILAT LOWER EXT VEINS",
    "ABDOMEN (SUPINE & ERECT)",
    "CT PELVIS W/CONTRAST",
    "MR L SPINE W/O CONTRAST",
    "UNILAT UP EXT VEINS US",
)
RADIOLOGY_FINDINGS = (
    "there is {aP} in the <right lower lobe~left lower lobe~right upper lobe~lingula~retrocardiac region> .",
    "no {P} or {P} .",
    "the cardiomediastinal silhouette is within normal limits .",
    "{X:icu} tip terminates in the <lower svc~right atrium~mid trachea~stomach> .",
    "interval worsening of {P} compared to prior study .",
    "there is no evidence of {P} .",
    "small bilateral {P} with adjacent atelectasis .",
    "findings are concerning for {P} .",
    "{P} is again noted , not significantly changed .",
    "osseous structures are unremarkable .",
    "the liver , spleen , and pancreas are unremarkable .",
    "there is a {num:n} mm {P:onc} .",
    "no acute intracranial process .",
    "moderate {P} , unchanged .",
)
RADIOLOGY_IMPRESSIONS = (
    "{aP} .",
    "no acute cardiopulmonary process .",
    "findings consistent with {P} .",
    "interval improvement in {P} .",
    "{P} , recommend {T} for further evaluation .",
    "no evidence of {P} .",
    "stable {P} .",
)
ECG_FINDINGS = (
    "sinus rhythm",
    "sinus tachycardia",
    "sinus bradycardia",
    "atrial fibrillation with rapid ventricular response",
    "atrial fibrillation with controlled ventricular response",
    "left axis deviation",
    "right bundle-branch block",
    "left bundle-branch block",
    "first degree a-v delay",
    "low qrs voltages in the limb leads",
    "non-specific st-t wave changes",
    "prolonged qt interval",
    "ventricular premature beats",
    "inferior myocardial infarction , age undetermined",
    "poor r wave progression",
    "left ventricular hypertrophy with secondary repolarization abnormalities",
    "intraventricular conduction delay",
    "anterior st segment elevations consistent with acute myocardial infarction",
    "paced rhythm",
    "lateral t wave inversions",
    "borderline ecg",
    "normal ecg",
)
ECG_CLOSINGS = (
    "since the previous tracing of {date:-30} no significant change .",
    "compared to the previous tracing the rate has increased .",
    "clinical correlation is suggested .",
    "no previous tracing available for comparison .",
    "st-t wave changes may be due to {P:cardio} .",
)
ECHO_LINES = (
    "left atrium : <mild~moderate~no> la enlargement .",
    "left ventricle : normal lv wall thickness , cavity size and regional / global systolic function . lvef > 55 % .",
    "left ventricle : <mild~moderate~severe> global lv hypokinesis . lvef = {num:ef} % .",
    "right ventricle : normal rv chamber size and free wall motion .",
    "aortic valve : <mildly thickened~normal> aortic valve leaflets . <no~mild~moderate> as . <no~trace~1+> ar .",
    "mitral valve : mildly thickened mitral valve leaflets . <mild~moderate~trace> ( 1+ ) mr .",
    "tricuspid valve : <mild~moderate> [ 1+ ] tr . <mild~moderate> pa systolic hypertension .",
    "pericardium : <no~small~trivial> pericardial effusion .",
    "conclusions : the left atrium is <normal in size~mildly dilated> . there is {P:cardio} .",
    "compared with the prior study ( images reviewed ) of {date:-90} , {P:cardio} is now seen .",
)
NURSING_LINES = (
    "neuro : a&ox3 , mae , follows commands , {P:neuro} noted .",
    "neuro : sedated on {D:icu} , rass -2 .",
    "cv : {VITALS} , {P:cardio} , {D:cardio} given as ordered .",
    "cv : hr 80s-90s nsr , no ectopy , k repleted .",
    "resp : ls {P:exam} , on {X:icu} , sats {num:sat} % .",
    "resp : lungs clear , weaned to 2l nc .",
    "gi/gu : abd soft , + bs , foley draining clear yellow urine , {P:gi} .",
    "gi : tolerating tube feeds at goal , {D:gi} given .",
    "id : tmax {num:temp} , {D:id} as ordered , {T:id} pending .",
    "skin : {P:exam} on coccyx , wound care per protocol .",
    "social : family in to visit , updated on plan of care .",
    "plan : continue to monitor , {FILL} .",
    "pain : c/o {P} , medicated with {D} with good effect .",
    "endo : riss , {T:lab} {num:glu} , covered per scale .",
    "access : {X:icu} , piv x2 .",
)
PHYSICIAN_LINES = (
    "chief complaint : {P}",
    "24 hour events :",
    "{X} - at {date:1} 10:00 am",
    "allergies :",
    "{D} ( {P:allergy} )",
    "last dose of antibiotics :",
    "{D:id} - {date:1} 08:00 pm",
    "infusions :",
    "{D:icu} - 0.1 mcg / kg / min",
    "other icu medications :",
    "{D} - {date:1} 12:00 am",
    "flowsheet data as of {date:2} 06:46 am",
    "vital signs",
    "{VITALS}",
    "hemodynamic monitoring",
    "fluid balance : 24 hours , since 12 am",
    "physical examination",
    "general appearance : {P:exam}",
    "labs / radiology",
    "{LABS}",
    "assessment and plan",
    "{P} , {P}",
    "# {P} - continue {R}",
    "- f/u {T}",
    "icu care",
    "nutrition : {X:icu}",
    "glycemic control : {D:general}",
    "prophylaxis : dvt : {D:cardio} , stress ulcer : {D:gi}",
    "code status : full code",
    "disposition : icu",
)
RESPIRATORY_LINES = (
    "respiratory care : pt remains intubated on a/c 500 x {num:bun} , peep 5 , fio2 40 % .",
    "bs coarse bilat , suctioned for mod amts thick tan secretions .",
    "abg <7.38/42/88~7.29/55/71~7.44/36/102~7.21/61/64> on current settings .",
    "mdi 's given as ordered : {D:general} .",
    "plan : wean as tolerated , sbt in am .",
    "pt placed on {X:icu} overnight for {P:icu} .",
    "rsbi {num:plt} .",
    "pt extubated to {X:icu} , tolerating well .",
    "will continue to follow .",
    "ventilator changes : peep increased to 10 for {P:icu} .",
)


def _lines(ctx: NoteContext, templates: tuple[str, ...], lo: int, hi: int) -> list[Line]:
    """Between ``lo`` and ``hi`` lines from distinct templates, in template order."""
    n = min(ctx.rng.randint(lo, hi), len(templates))
    picked = sorted(ctx.rng.sample(range(len(templates)), n))
    return [render(ctx, templates[i]) for i in picked]


def radiology(ctx: NoteContext) -> tuple[str, list[Line]]:
    exam = ctx.rng.choice(RADIOLOGY_EXAMS)
    head: list[Line] = [
        [
            Seg(
                exam
                + "   clip # [**clip number (radiology) "
                + str(ctx.rng.randint(1000, 99999))
                + "**]"
            )
        ],
        render(ctx, "reason : {P}"),
        [Seg("_" * 78)],
        [Seg("final report")],
        render(ctx, "indication : {age} year old {sexw} with {P} , evaluate for {P} ."),
        render(ctx, "comparison : {date:-20} ."),
    ]
    body = [
        [Seg("findings :")],
        *_lines(ctx, RADIOLOGY_FINDINGS, 2, 6),
        [Seg("impression :")],
        *_lines(ctx, RADIOLOGY_IMPRESSIONS, 1, 3),
    ]
    return exam, head + body


def ecg(ctx: NoteContext) -> tuple[str, list[Line]]:
    picks = ctx.rng.sample(ECG_FINDINGS, ctx.rng.randint(1, 4))
    lines: list[Line] = [[Seg(p + " .")] for p in picks]
    return "Report", lines + _lines(ctx, ECG_CLOSINGS, 1, 2)


def echo(ctx: NoteContext) -> tuple[str, list[Line]]:
    head = [
        [Seg("patient/test information :")],
        render(ctx, "indication : {P:cardio} ."),
        [Seg(f"height : ( in ) {ctx.rng.randint(58, 76)}")],
        [Seg(f"weight ( lb ) : {ctx.rng.randint(98, 310)}")],
        [Seg(f"bp ( mm hg ) : {ctx.rng.randint(90, 180)}/{ctx.rng.randint(50, 100)}")],
        [Seg("status : inpatient")],
        [Seg("test : tte ( complete )")],
        [Seg("interpretation :")],
        [Seg("findings :")],
    ]
    return "Report", head + _lines(ctx, ECHO_LINES, 3, 8)


def nursing(ctx: NoteContext, *, other: bool) -> tuple[str, list[Line]]:
    if other:
        title = ctx.rng.choice(
            ("npn 7p-7a", "npn 7a-7p", "nursing note", "micu nursing progress note")
        )
        return "Report", [[Seg(title)], *_lines(ctx, NURSING_LINES, 3, 7)]
    title = ctx.rng.choice(
        ("Nursing Progress Note", "Nursing Transfer Note", "Nursing Admission Note")
    )
    lines = [render(ctx, "{age} yo {sex} admitted with {P} , {P} .")] + _lines(
        ctx, NURSING_LINES, 5, 11
    )
    return title, lines


def physician(ctx: NoteContext) -> tuple[str, list[Line]]:
    title = ctx.rng.choice(
        (
            "Physician Resident Progress Note",
            "Intensivist Note",
            "Physician Attending Admission Note",
            "Physician Resident Admission Note",
        )
    )
    lines = _lines(ctx, PHYSICIAN_LINES, 12, len(PHYSICIAN_LINES))
    return title, lines + _lines(ctx, NURSING_LINES, 0, 2)


def respiratory(ctx: NoteContext) -> tuple[str, list[Line]]:
    title = ctx.rng.choice(("Respiratory Care Shift Note", "Respiratory Care"))
    return title, _lines(ctx, RESPIRATORY_LINES, 3, 7)


def category_note(ctx: NoteContext, category: str) -> tuple[str, list[Line]]:
    """``(DESCRIPTION, lines)`` of a note of MIMIC-III ``category``, in the site's casing."""
    if category == "Discharge summary":
        return "Report", discharge_summary(ctx)
    description, lines = _category_lines(ctx, category)
    return description, [apply_casing(ctx.profile, line) for line in lines]


def _category_lines(ctx: NoteContext, category: str) -> tuple[str, list[Line]]:
    if category == "Discharge summary":
        return "Report", discharge_summary(ctx)
    if category == "Radiology":
        return radiology(ctx)
    if category == "ECG":
        return ecg(ctx)
    if category == "Echo":
        return echo(ctx)
    if category in ("Nursing", "Nursing/other"):
        return nursing(ctx, other=category == "Nursing/other")
    if category == "Physician ":
        return physician(ctx)
    if category == "Respiratory ":
        return respiratory(ctx)
    raise ValueError(f"unknown note category {category!r}")


_SPACE_BEFORE = re.compile(r" ([,.;:)\]%])")
_SPACE_AFTER = re.compile(r"([(\[]) ")


def natural_text(lines: list[Line]) -> str:
    """Lines of segments as MIMIC-like prose: punctuation attached, one line per sentence."""
    out = []
    for line in lines:
        text = " ".join(seg.text for seg in line)
        text = _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", text))
        out.append(text.replace("[** ", "[**").replace(" **]", "**]"))
    return "\n".join(out) + "\n"
