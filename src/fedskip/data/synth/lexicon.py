"""Clinical term lists for the synthetic corpus, by entity type and clinical domain.

Each pool lists surface forms (lowercase) roughly from most to least frequent: the generator
samples them with a Zipf-like law, so the first terms recur across notes and the tail appears
only once or twice (which gives the test split surface forms never seen in training).
Domains are shared by the three types so that a site's specialty mix can weight them all:
``cardio``, ``onc``, ``icu``, ``general``, ``renal``, ``neuro``, ``gi``, ``id``; problems also
have ``exam`` (physical-exam findings) and tests ``lab``, ``imaging``, ``vitals``.
"""

from __future__ import annotations


def split_terms(text: str) -> tuple[str, ...]:
    """``"a|b\\n|c"`` → ``("a", "b", "c")``: terms separated by ``|`` across lines."""
    return tuple(t.strip() for t in text.replace("\n", "|").split("|") if t.strip())


PROBLEMS: dict[str, tuple[str, ...]] = {
    "cardio": split_terms("""
chest pain|coronary artery disease|congestive heart failure|atrial fibrillation|hypertension
|hyperlipidemia|unstable angina|angina|myocardial infarction|non-st elevation myocardial infarction
|st elevation myocardial infarction|systolic heart failure|diastolic heart failure|atrial flutter
|ventricular tachycardia|ventricular fibrillation|bradycardia|sinus tachycardia|tachycardia
|complete heart block|heart block|hypotension|orthostatic hypotension|aortic stenosis
|mitral regurgitation|tricuspid regurgitation|ischemic cardiomyopathy|dilated cardiomyopathy
|cardiomyopathy|pericarditis|pericardial effusion|cardiac tamponade|endocarditis
|peripheral vascular disease|deep venous thrombosis|pulmonary embolism|palpitations|syncope
|presyncope|dyspnea on exertion|orthopnea|paroxysmal nocturnal dyspnea|lower extremity edema
|pedal edema|jugular venous distension|systolic murmur|hypercholesterolemia|dyslipidemia
|abdominal aortic aneurysm|aortic aneurysm|carotid stenosis|claudication|volume overload
|fluid overload|cardiogenic shock|left ventricular hypertrophy|wall motion abnormality
|in-stent restenosis|troponin leak|demand ischemia|three vessel disease|two vessel disease
|heart failure exacerbation|chf exacerbation|hypertensive urgency|hypertensive emergency
|sick sinus syndrome|av block|long qt|qt prolongation|diaphoresis|substernal chest pressure
|exertional angina|rapid ventricular response|pulmonary hypertension|pulmonary edema
|aortic dissection|mitral stenosis|aortic regurgitation|lv thrombus|sinus bradycardia
|premature ventricular contractions|nonsustained ventricular tachycardia|junctional rhythm
|inferior st elevations|st depressions|t wave inversions|ischemic changes|moderate pulmonary hypertension
"""),
    "onc": split_terms("""
adenocarcinoma|metastatic disease|non-small cell lung cancer|small cell lung cancer|breast cancer
|colon cancer|pancreatic cancer|prostate cancer|hepatocellular carcinoma|renal cell carcinoma
|lymphoma|diffuse large b-cell lymphoma|hodgkin lymphoma|multiple myeloma|acute myeloid leukemia
|chronic lymphocytic leukemia|myelodysplastic syndrome|brain metastases|liver metastases
|bone metastases|malignant pleural effusion|neutropenic fever|febrile neutropenia|neutropenia
|pancytopenia|tumor lysis syndrome|hypercalcemia|cachexia|weight loss|fatigue|mucositis
|cancer pain|spinal cord compression|superior vena cava syndrome|lymphadenopathy|lung mass
|pancreatic mass|liver lesions|lytic lesions|pathologic fracture|malignant ascites
|esophageal cancer|gastric cancer|ovarian cancer|melanoma|squamous cell carcinoma|glioblastoma
|mass|nodule|pulmonary nodules|peritoneal carcinomatosis|leptomeningeal disease
|chemotherapy induced nausea|peripheral neuropathy|graft versus host disease|bladder cancer
|cholangiocarcinoma|mesothelioma|metastatic breast cancer|stage iv colon cancer
|recurrent disease|progression of disease|tumor burden|bulky adenopathy|pleural nodularity
|hilar mass|mediastinal lymphadenopathy|adrenal metastasis|anorexia|failure to thrive
"""),
    "icu": split_terms("""
respiratory failure|acute respiratory failure|hypoxic respiratory failure|hypercarbic respiratory failure
|acute respiratory distress syndrome|sepsis|severe sepsis|septic shock|shock|hypovolemic shock
|multiorgan failure|metabolic acidosis|lactic acidosis|respiratory acidosis|altered mental status
|delirium|encephalopathy|hepatic encephalopathy|aspiration pneumonia|ventilator associated pneumonia
|pneumothorax|hypoxia|hypoxemia|hypercapnia|hemodynamic instability|cardiac arrest|pea arrest
|coagulopathy|disseminated intravascular coagulation|hyperkalemia|hypokalemia|hyponatremia
|hypernatremia|hypomagnesemia|hypophosphatemia|hypoglycemia|diabetic ketoacidosis
|alcohol withdrawal|delirium tremens|rhabdomyolysis|line infection|bacteremia|fungemia
|agitation|oliguria|anuria|unresponsiveness|hypothermia|tension pneumothorax|mucus plugging
|respiratory distress|tachypnea|increased work of breathing|acidemia|alkalosis|vasoplegia
|upper airway obstruction|stridor|critical illness myopathy|anoxic brain injury|overdose
|intoxication|aspiration event|massive hemoptysis|hemorrhagic shock|abdominal compartment syndrome
|ventilator dependence|failed extubation|ileus|stress ulcer|hypervolemia|hypovolemia|dehydration
"""),
    "general": split_terms("""
pneumonia|urinary tract infection|diabetes mellitus|type 2 diabetes mellitus|fever|shortness of breath
|cough|abdominal pain|nausea|vomiting|diarrhea|constipation|headache|dizziness|back pain|anemia
|chronic obstructive pulmonary disease|copd exacerbation|asthma|asthma exacerbation
|obstructive sleep apnea|gastroesophageal reflux disease|hypothyroidism|hyperthyroidism|depression
|anxiety|dementia|osteoarthritis|rheumatoid arthritis|osteoporosis|gout|obesity|morbid obesity
|tobacco abuse|alcohol abuse|benign prostatic hypertrophy|urinary retention|falls|hip fracture
|cellulitis|abscess|chills|productive cough|leukocytosis|hyperglycemia|thrombocytopenia
|type 1 diabetes mellitus|insomnia|poor appetite|malaise|generalized weakness|edema|wheezing
|rash|pruritus|community acquired pneumonia|influenza|bronchitis|chronic pain|anemia of chronic disease
|iron deficiency anemia|vitamin b12 deficiency|hypoalbuminemia|malnutrition|pressure ulcer
|decubitus ulcer|sacral decubitus|lightheadedness|night sweats|hemoptysis|epistaxis|fall
|mechanical fall|polyuria|polydipsia|blurred vision|joint pain|myalgias|sore throat
|right lower lobe pneumonia|left lower lobe infiltrate|right upper lobe opacity|pleural effusion
|atelectasis|emphysema|interstitial lung disease|pulmonary fibrosis|sarcoidosis|lupus
|polymyalgia rheumatica|hypokalemia|hyponatremia|frailty|deconditioning|debility
"""),
    "renal": split_terms("""
acute kidney injury|chronic kidney disease|end stage renal disease|acute renal failure
|acute tubular necrosis|nephrolithiasis|kidney stones|pyelonephritis|hematuria|proteinuria
|nephrotic syndrome|glomerulonephritis|hydronephrosis|renal insufficiency|uremia
|contrast nephropathy|prerenal azotemia|polycystic kidney disease|renal artery stenosis
|secondary hyperparathyroidism|volume depletion|elevated creatinine|rising creatinine
|hypertensive nephropathy|diabetic nephropathy|urosepsis|neurogenic bladder|obstructive uropathy
|av fistula thrombosis|fistula infection|calciphylaxis|hyperphosphatemia|renal osteodystrophy
"""),
    "neuro": split_terms("""
stroke|transient ischemic attack|seizure|seizures|left sided weakness|right sided weakness|aphasia
|dysphagia|ischemic stroke|intracranial hemorrhage|subarachnoid hemorrhage|subdural hematoma
|status epilepticus|parkinson's disease|multiple sclerosis|migraine|slurred speech|facial droop
|confusion|memory loss|vertigo|neuropathy|numbness|tingling|dysarthria|hemiparesis|ataxia
|cerebral edema|hydrocephalus|meningitis|encephalitis|syncopal episode|gait instability
|word finding difficulty|visual field cut|left middle cerebral artery infarct|lacunar infarct
|small vessel ischemic disease|postictal state|tremor|cognitive decline|spinal stenosis
"""),
    "gi": split_terms("""
gastrointestinal bleeding|upper gi bleed|lower gi bleed|melena|hematochezia|hematemesis|cirrhosis
|pancreatitis|acute pancreatitis|cholecystitis|small bowel obstruction|diverticulitis
|diverticulosis|appendicitis|hepatitis c|hepatitis b|ascites|esophageal varices|jaundice
|peptic ulcer disease|gastric ulcer|duodenal ulcer|colitis|ischemic colitis|crohn's disease
|ulcerative colitis|gastroparesis|fatty liver|transaminitis|elevated lfts|hyperbilirubinemia
|choledocholithiasis|cholangitis|biliary obstruction|portal hypertension|spontaneous bacterial peritonitis
|abdominal distension|bloating|dysphagia to solids|odynophagia|bright red blood per rectum
|coffee ground emesis|hemorrhoids|barrett's esophagus|esophagitis|gastritis|anal fissure
|mallory-weiss tear|polyps|colonic polyps|avm|angiodysplasia|hepatorenal syndrome
"""),
    "id": split_terms("""
e. coli|mrsa|klebsiella pneumoniae|pseudomonas|enterococcus|vre|c. diff colitis
|clostridium difficile infection|urosepsis|line sepsis|mssa bacteremia|osteomyelitis
|septic arthritis|infected ulcer|wound infection|cellulitis of the left leg|empyema
|lung abscess|tuberculosis|hiv|aids|pneumocystis pneumonia|candidemia|thrush|herpes zoster
|shingles|viral syndrome|covid-19|rsv|strep pneumoniae|gram negative rods|gram positive cocci
|coag negative staph|bacteroides|yeast|positive blood cultures|fever of unknown origin
|infectious diarrhea|catheter associated urinary tract infection|esbl e. coli|proteus
|serratia|acinetobacter|stenotrophomonas|influenza a|prosthetic joint infection
"""),
    "exam": split_terms("""
murmurs|rubs|gallops|crackles|rales|wheezes|rhonchi|bibasilar crackles|decreased breath sounds
|jvd|hepatomegaly|splenomegaly|tenderness|rebound|guarding|distension|pitting edema
|2+ pitting edema|trace edema|clubbing|cyanosis|erythema|asterixis|focal deficits|carotid bruits
|s3|s4|lymphadenopathy|dry mucous membranes|scleral icterus|acute distress|accessory muscle use
|egophony|dullness to percussion|fluid wave|spider angiomata|caput medusae|pallor|diaphoresis
|irregularly irregular rhythm|holosystolic murmur|pericardial rub|petechiae|ecchymoses
"""),
}

TESTS: dict[str, tuple[str, ...]] = {
    "lab": split_terms("""
white blood cell count|hemoglobin|hematocrit|platelets|sodium|potassium|creatinine|bun|glucose
|chloride|bicarbonate|calcium|magnesium|phosphorus|albumin|inr|pt|ptt|lactate|lfts|cbc
|basic metabolic panel|comprehensive metabolic panel|chem 7|liver function tests|coags
|ast|alt|alkaline phosphatase|total bilirubin|direct bilirubin|lipase|amylase|fibrinogen|d-dimer
|ldh|uric acid|ferritin|iron studies|tibc|b12|folate|tsh|free t4|hemoglobin a1c|lipid panel
|ldl|hdl|triglycerides|total cholesterol|crp|esr|procalcitonin|urinalysis|urine sodium|fena
|arterial blood gas|venous blood gas|ph|pco2|po2|anion gap|serum osmolality|ammonia|cortisol
|vancomycin trough|digoxin level|tacrolimus level|serum alcohol level|tox screen|urine tox screen
|reticulocyte count|haptoglobin|coombs test|type and screen|peripheral smear|blood sugars
|fingerstick glucose|fingersticks|serum protein electrophoresis|urine protein electrophoresis
|free light chains|blood urea nitrogen|mixed venous oxygen saturation|ionized calcium|lactic acid
|urine osmolality|urine culture|stool guaiac|hemoccult|urine output|differential|bands
|eosinophils|absolute neutrophil count|cd4 count|viral load|hepatitis panel|hiv test
|beta-hcg|urine protein to creatinine ratio|24 hour urine protein|thyroid function tests
"""),
    "cardio": split_terms("""
troponin|ekg|electrocardiogram|echocardiogram|transthoracic echocardiogram|cardiac enzymes|bnp
|ck|ck-mb|stress test|cardiac catheterization|telemetry|transesophageal echocardiogram
|nuclear stress test|exercise stress test|persantine mibi|coronary angiography|holter monitor
|event monitor|troponin t|troponin i|pro-bnp|ejection fraction|lvef|ekgs|serial ekgs
|serial cardiac enzymes|right heart catheterization|left heart catheterization|tilt table test
|ankle brachial index|carotid dopplers|lower extremity dopplers|ct angiogram|cardiac mri
|interrogation of the pacemaker|device interrogation|pulmonary artery pressures|wedge pressure
|cardiac index|dobutamine stress echo|lipid profile
"""),
    "imaging": split_terms("""
chest x-ray|ct scan|ct of the chest|ct of the abdomen and pelvis|head ct|ct head|mri|mri of the brain
|ultrasound|abdominal ultrasound|renal ultrasound|right upper quadrant ultrasound|cta chest
|mri of the spine|mra|pet scan|pet-ct|bone scan|v/q scan|kub|abdominal x-ray|barium swallow
|chest radiograph|portable chest x-ray|noncontrast head ct|ct with contrast|ct without contrast
|pelvic ultrasound|doppler ultrasound|hida scan|mrcp|ct of the neck|x-ray of the left hip
|x-ray of the right knee|plain films|imaging|repeat imaging|follow-up ct|staging scans|fluoroscopy
|video swallow study|modified barium swallow|skeletal survey|ct of the spine|mammogram
"""),
    "vitals": split_terms("""
vital signs|blood pressure|heart rate|respiratory rate|temperature|oxygen saturation|weight
|pulse|physical exam|exam|orthostatic vital signs|i/o|ins and outs|pulse oximetry|tmax
"""),
    "onc": split_terms("""
biopsy|bone marrow biopsy|fine needle aspiration|cea|ca 19-9|psa|afp|ca-125|flow cytometry
|beta-2 microglobulin|cytology|pathology|immunohistochemistry|tumor markers|staging workup
|core biopsy|lymph node biopsy|excisional biopsy|cytogenetics|molecular testing|egfr mutation testing
|her2 status|pleural fluid cytology|restaging scans|mri of the liver
"""),
    "gi": split_terms("""
egd|colonoscopy|ercp|endoscopy|upper endoscopy|capsule endoscopy|stool studies|c. diff toxin
|stool culture|ova and parasites|paracentesis|diagnostic paracentesis|ascitic fluid analysis
|liver biopsy|h. pylori antibody|fecal occult blood test|sigmoidoscopy|endoscopic ultrasound
"""),
    "neuro": split_terms("""
eeg|emg|lumbar puncture|csf analysis|neurologic exam|mental status exam|mri/mra of the head
|carotid ultrasound|nerve conduction studies|continuous eeg monitoring|ct perfusion
|nih stroke scale|swallow evaluation|bedside swallow evaluation|cognitive testing
"""),
    "renal": split_terms("""
urine electrolytes|urine eosinophils|renal biopsy|urine sediment|spot urine protein|pth|urine creatinine
|renal function|post void residual|bladder scan|24 hour urine|cystoscopy|renal scan
"""),
    "id": split_terms("""
blood cultures|sputum culture|gram stain|urine legionella antigen|strep pneumo antigen
|respiratory viral panel|influenza swab|mrsa screen|wound culture|fungal cultures|afb smear
|quantiferon|rpr|cultures|surveillance cultures|beta-d-glucan|galactomannan|culture data
|sensitivities|bal|bronchoalveolar lavage|thoracentesis|pleural fluid analysis|joint aspiration|csf culture|c. diff assay|stool c. diff
"""),
}

TREATMENTS: dict[str, tuple[str, ...]] = {
    "cardio": split_terms("""
aspirin|metoprolol|heparin|lisinopril|atorvastatin|furosemide|lasix|clopidogrel|plavix|warfarin
|coumadin|carvedilol|amlodipine|nitroglycerin|simvastatin|enoxaparin|lovenox|metoprolol tartrate
|metoprolol succinate|toprol xl|lopressor|atenolol|labetalol|diltiazem|verapamil|nifedipine
|enalapril|captopril|losartan|valsartan|hydralazine|isosorbide mononitrate|imdur|isosorbide dinitrate
|sublingual nitroglycerin|nitro drip|heparin drip|torsemide|bumetanide|bumex|spironolactone
|hydrochlorothiazide|metolazone|digoxin|amiodarone|sotalol|dofetilide|lipitor|pravastatin
|rosuvastatin|crestor|ezetimibe|apixaban|eliquis|rivaroxaban|xarelto|dabigatran|ticagrelor
|prasugrel|integrilin|eptifibatide|bivalirudin|tpa|adenosine|ranolazine|sacubitril-valsartan
|entresto|ivabradine|milrinone|nesiritide|lasix drip|diuretics|beta blocker|ace inhibitor
|statin|anticoagulation|antiplatelet therapy|dual antiplatelet therapy|pci|percutaneous coronary intervention
|stent placement|drug eluting stent|bare metal stent|cabg|coronary artery bypass graft|angioplasty
|pacemaker placement|pacemaker|icd placement|aicd|cardioversion|dc cardioversion|ablation
|aortic valve replacement|mitral valve repair|intra-aortic balloon pump|cardiac rehabilitation
|low sodium diet|fluid restriction|diuresis|iv diuresis|tavr|watchman device|biventricular pacemaker
"""),
    "onc": split_terms("""
chemotherapy|cisplatin|carboplatin|paclitaxel|taxol|docetaxel|gemcitabine|5-fu|fluorouracil
|oxaliplatin|folfox|folfirinox|irinotecan|cyclophosphamide|doxorubicin|r-chop|rituximab
|bevacizumab|avastin|trastuzumab|herceptin|pembrolizumab|nivolumab|etoposide|cytarabine
|methotrexate|hydroxyurea|imatinib|lenalidomide|revlimid|bortezomib|velcade|dexamethasone
|decadron|ondansetron|zofran|prochlorperazine|compazine|filgrastim|neupogen|pegfilgrastim
|neulasta|allopurinol|rasburicase|radiation therapy|xrt|whole brain radiation|palliative radiation
|stereotactic radiosurgery|tumor resection|lobectomy|mastectomy|lumpectomy|whipple procedure
|port placement|hospice care|palliative care|comfort care|morphine|oxycodone|dilaudid
|hydromorphone|fentanyl patch|ms contin|oxycontin|megestrol|tamoxifen|letrozole|anastrozole
|leuprolide|capecitabine|xeloda|erlotinib|osimertinib|temozolomide|azacitidine|decitabine
|stem cell transplant|autologous stem cell transplant|bone marrow transplant|atra|carfilzomib
|zoledronic acid|denosumab|pleurx catheter|pleurodesis|g-csf|olanzapine
|immunotherapy|targeted therapy|adjuvant chemotherapy|neoadjuvant chemotherapy
"""),
    "icu": split_terms("""
intubation|mechanical ventilation|extubation|bipap|cpap|oxygen|supplemental oxygen|nasal cannula
|high flow nasal cannula|non-rebreather|face mask|norepinephrine|levophed|vasopressin|phenylephrine
|neosynephrine|dopamine|dobutamine|epinephrine|pressors|vasopressors|propofol|fentanyl drip
|midazolam|versed|dexmedetomidine|precedex|sedation|iv fluids|normal saline|lactated ringer's
|fluid boluses|ivf|packed red blood cells|prbcs|blood transfusion|transfusion|fresh frozen plasma
|ffp|platelet transfusion|platelets|cryoprecipitate|vitamin k|protamine|insulin drip
|sodium bicarbonate|bicarbonate drip|calcium gluconate|kayexalate|potassium chloride
|magnesium sulfate|central line|arterial line|a-line|foley catheter|foley|ng tube|og tube
|tube feeds|tpn|stress ulcer prophylaxis|thiamine|folic acid|multivitamin|banana bag
|ciwa protocol|chest tube|tracheostomy|peg tube|cooling protocol|therapeutic hypothermia|cpr
|defibrillation|ecmo|paralytics|cisatracurium|ketamine|etomidate|succinylcholine|hydrocortisone
|stress dose steroids|albumin|massive transfusion protocol|pigtail catheter|ventilator support
|lung protective ventilation|proning|nitric oxide|octreotide drip|pantoprazole drip
"""),
    "id": split_terms("""
antibiotics|vancomycin|zosyn|piperacillin-tazobactam|cefepime|meropenem|ceftriaxone|levofloxacin
|ciprofloxacin|azithromycin|metronidazole|flagyl|clindamycin|linezolid|daptomycin|micafungin
|fluconazole|acyclovir|oseltamivir|tamiflu|broad spectrum antibiotics|iv antibiotics|bactrim
|cephalexin|keflex|amoxicillin|augmentin|doxycycline|nitrofurantoin|macrobid|cefazolin|ancef
|ampicillin|gentamicin|tobramycin|aztreonam|ertapenem|imipenem|ceftazidime|cefpodoxime
|oral vancomycin|po vancomycin|fidaxomicin|rifampin|isoniazid|valganciclovir|ganciclovir
|voriconazole|amphotericin b|caspofungin|atovaquone|dapsone|antiretroviral therapy|haart
|picc line|incision and drainage|debridement|washout|source control|empiric antibiotics
|contact precautions|cefdinir|moxifloxacin|minocycline|tigecycline|colistin|ceftaroline
"""),
    "general": split_terms("""
acetaminophen|tylenol|insulin|metformin|prednisone|albuterol|omeprazole|docusate|colace|senna
|ibuprofen|gabapentin|levothyroxine|synthroid|insulin sliding scale|lantus|insulin glargine
|humalog|novolog|glipizide|glyburide|sitagliptin|januvia|pioglitazone|tramadol|naproxen|motrin
|neurontin|methylprednisolone|solu-medrol|ipratropium|albuterol nebulizers|duonebs|combivent
|tiotropium|spiriva|fluticasone|advair|symbicort|montelukast|prilosec|lansoprazole|famotidine
|ranitidine|sucralfate|bisacodyl|miralax|polyethylene glycol|sertraline|zoloft|citalopram
|celexa|escitalopram|lexapro|fluoxetine|prozac|trazodone|mirtazapine|remeron|quetiapine|seroquel
|olanzapine|zyprexa|haloperidol|haldol|lorazepam|ativan|alprazolam|xanax|clonazepam|donepezil
|aricept|memantine|tamsulosin|flomax|finasteride|oxybutynin|colchicine|vitamin d|calcium carbonate
|ferrous sulfate|iron supplementation|b12 injections|potassium supplementation|nicotine patch
|physical therapy|occupational therapy|incentive spirometry|wound care|cholecystectomy
|appendectomy|total hip replacement|total knee replacement|hip replacement|orif|diabetic diet
|smoking cessation counseling|steroid taper|nebulizers|inhalers|pain medications|narcotics
|opioids|home oxygen|home pt|cane|walker|compression stockings|sequential compression devices
|subcutaneous heparin|dvt prophylaxis|bowel regimen|sleep aid|melatonin|zolpidem|ambien
|loratadine|diphenhydramine|benadryl|hydroxyzine|cetirizine|guaifenesin|cough syrup|lidocaine patch
"""),
    "renal": split_terms("""
hemodialysis|dialysis|peritoneal dialysis|cvvh|crrt|ultrafiltration|sevelamer|renvela|calcitriol
|epoetin|epogen|aranesp|sodium bicarbonate tablets|calcium acetate|phoslo|cinacalcet|sensipar
|av fistula|tunneled dialysis catheter|hd catheter|renal transplant|kidney transplant|tacrolimus
|mycophenolate|cellcept|prograf|cyclosporine|nephrostomy tube|ureteral stent|lithotripsy
|foley placement|iv hydration|volume resuscitation|renal replacement therapy|plasmapheresis
"""),
    "neuro": split_terms("""
levetiracetam|keppra|phenytoin|dilantin|valproic acid|depakote|lacosamide|carbamazepine
|topiramate|lamotrigine|tpa|thrombectomy|craniotomy|evd|external ventricular drain|mannitol
|hypertonic saline|nimodipine|carbidopa-levodopa|sinemet|sumatriptan|baclofen|tizanidine
|cyclobenzaprine|speech therapy|swallow therapy|seizure precautions|fall precautions|neuro checks|kyphoplasty|laminectomy|spinal fusion|ivig|interferon
"""),
    "gi": split_terms("""
pantoprazole|protonix|lactulose|rifaximin|octreotide|ceftriaxone prophylaxis|nadolol|propranolol
|banding|variceal banding|sclerotherapy|tips|large volume paracentesis|therapeutic paracentesis
|ursodiol|creon|pancreatic enzymes|mesalamine|infliximab|remicade|adalimumab|humira|budesonide
|loperamide|imodium|metoclopramide|reglan|simethicone|bowel rest|npo|clear liquid diet
|ng tube decompression|sphincterotomy|biliary stent|percutaneous cholecystostomy|hemicolectomy
|polypectomy|clipping|epinephrine injection|cauterization|liver transplant
"""),
}

NON_DRUG_TREATMENTS = frozenset(
    split_terms("""
diuretics|beta blocker|ace inhibitor|statin|anticoagulation|antiplatelet therapy|dual antiplatelet therapy
|pci|percutaneous coronary intervention|stent placement|drug eluting stent|bare metal stent|cabg
|coronary artery bypass graft|angioplasty|pacemaker placement|pacemaker|icd placement|aicd|cardioversion
|dc cardioversion|ablation|aortic valve replacement|mitral valve repair|intra-aortic balloon pump
|cardiac rehabilitation|low sodium diet|fluid restriction|diuresis|iv diuresis|tavr|watchman device
|biventricular pacemaker|chemotherapy|radiation therapy|xrt|whole brain radiation|palliative radiation
|stereotactic radiosurgery|tumor resection|lobectomy|mastectomy|lumpectomy|whipple procedure|port placement
|hospice care|palliative care|comfort care|stem cell transplant|autologous stem cell transplant
|bone marrow transplant|pleurx catheter|pleurodesis|immunotherapy|targeted therapy|adjuvant chemotherapy
|neoadjuvant chemotherapy|intubation|mechanical ventilation|extubation|bipap|cpap|oxygen|supplemental oxygen
|nasal cannula|high flow nasal cannula|non-rebreather|face mask|pressors|vasopressors|sedation|fluid boluses
|packed red blood cells|prbcs|blood transfusion|transfusion|fresh frozen plasma|ffp|platelet transfusion
|platelets|cryoprecipitate|central line|arterial line|a-line|foley catheter|foley|ng tube|og tube|tube feeds
|tpn|stress ulcer prophylaxis|banana bag|ciwa protocol|chest tube|tracheostomy|peg tube|cooling protocol
|therapeutic hypothermia|cpr|defibrillation|ecmo|paralytics|stress dose steroids|massive transfusion protocol
|pigtail catheter|ventilator support|lung protective ventilation|proning|antibiotics|broad spectrum antibiotics
|iv antibiotics|antiretroviral therapy|haart|picc line|incision and drainage|debridement|washout|source control
|empiric antibiotics|contact precautions|physical therapy|occupational therapy|incentive spirometry|wound care
|cholecystectomy|appendectomy|total hip replacement|total knee replacement|hip replacement|orif|diabetic diet
|smoking cessation counseling|steroid taper|nebulizers|inhalers|pain medications|narcotics|opioids
|home oxygen|home pt|cane|walker|compression stockings|sequential compression devices|dvt prophylaxis
|bowel regimen|sleep aid|hemodialysis|dialysis|peritoneal dialysis|cvvh|crrt|ultrafiltration|av fistula
|tunneled dialysis catheter|hd catheter|renal transplant|kidney transplant|nephrostomy tube|ureteral stent
|lithotripsy|foley placement|iv hydration|volume resuscitation|renal replacement therapy|plasmapheresis
|thrombectomy|craniotomy|evd|external ventricular drain|speech therapy|swallow therapy|seizure precautions
|fall precautions|neuro checks|kyphoplasty|laminectomy|spinal fusion|banding|variceal banding|sclerotherapy
|tips|large volume paracentesis|therapeutic paracentesis|bowel rest|npo|clear liquid diet|ng tube decompression
|sphincterotomy|biliary stent|percutaneous cholecystostomy|hemicolectomy|polypectomy|clipping
|epinephrine injection|cauterization|liver transplant|r-chop|folfox|folfirinox
""")
)
"""Treatments that are procedures, devices, therapies or drug classes (not in medication lists)."""

DRUGS: dict[str, tuple[str, ...]] = {
    d: tuple(t for t in pool if t not in NON_DRUG_TREATMENTS) for d, pool in TREATMENTS.items()
}
PROCEDURES: dict[str, tuple[str, ...]] = {
    d: tuple(t for t in pool if t in NON_DRUG_TREATMENTS) for d, pool in TREATMENTS.items()
}

PROBLEMS["allergy"] = split_terms("""
rash|hives|anaphylaxis|angioedema|nausea|gi upset|itching|swelling|hallucinations|throat swelling
|renal failure|diarrhea|stevens-johnson syndrome|hypotension|wheezing|cough|myalgias|confusion
""")
