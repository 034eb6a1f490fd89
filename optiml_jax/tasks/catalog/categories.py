"""Mapping the collections' own category names onto the paper's (Super-NaturalInstructions-based) taxonomy.

Paper section 2.2: the taxonomy follows SuperNatInst's 76 categories; other collections' clusters were merged by
hand, coarsely (finer QA sub-types -> "Question Answering", hate speech -> "Toxic Language Detection"); only the
evaluation tasks' categories were unified with care. The rules here (also in optiml_jax/tasks/catalog/README.md):

1. NIv2 rows carry FLAN's generic category, which refines NIv2's `Misc.` for some tasks ("Country Capital
   Prediction", ...). Any name outside NIv2's taxonomy (`NIV2_TAXONOMY`) goes back to `Misc.`.
2. NIv2 rows without a category (NA in the shared TSV) get one from `NIV2_NAME_RULES` (keyword of the task name).
3. FLAN/T0 category names go through `FLAN_TO_PAPER` (NLI -> Textual Entailment, QA sub-types -> Question
   Answering, ...); names without an NIv2 counterpart (e.g. "Word Segmentation") stay as they are.
4. PromptSource datasets get a category from `PROMPTSOURCE_CATEGORIES` (T0's dataset clusters, mapped by rule 3).
5. `EVAL_CATEGORY_OVERRIDES`: the paper's own unification of evaluation tasks (Table 15 lists the NIv2 and
   PromptSource Winobias tasks under Stereotype Detection although NIv2 files task1664 under Coreference).
"""

from __future__ import annotations

import re

NIV2_TAXONOMY = frozenset("""Answer Verification|Answerability Classification|Cause Effect Classification|Code to Text|
Coherence Classification|Commonsense Classification|Coreference Resolution|Data to Text|Dialogue Act Recognition|
Dialogue Generation|Dialogue State Tracking|Discourse Connective Identification|Discourse Relation Classification|
Entity Generation|Entity Relation Classification|Ethics Classification|Explanation|Fact Verification|
Fill in The Blank|Gender Classification|Grammar Error Correction|Grammar Error Detection|Information Extraction|
Intent Identification|Irony Detection|Keyword Tagging|Language Identification|Linguistic Probing|Mathematics|Misc.|
Named Entity Recognition|Negotiation Strategy Detection|Number Conversion|Overlap Extraction|Paper Review|Paraphrasing|
Poem Generation|Pos Tagging|Preposition Prediction|Program Execution|Punctuation Error Detection|Question Answering|
Question Decomposition|Question Generation|Question Rewriting|Question Understanding|Section Classification|
Sentence Composition|Sentence Compression|Sentence Expansion|Sentence Ordering|Sentence Perturbation|
Sentiment Analysis|Spam Classification|Speaker Identification|Speaker Relation Classification|Spelling Error Detection|
Stance Detection|Stereotype Detection|Story Composition|Style Transfer|Summarization|Text Categorization|
Text Completion|Text Matching|Text Quality Evaluation|Text Simplification|Text to Code|Textual Entailment|
Title Generation|Toxic Language Detection|Translation|Word Analogy|Word Relation Classification|Word Semantics|
Wrong Candidate Generation""".replace("\n", "").split("|"))

# Keyword in the NIv2 task name -> category, for the tasks the shared TSV leaves NA (first match wins).
NIV2_NAME_RULES = (
    ("language_identification", "Language Identification"),
    ("_translation", "Translation"),
    ("mmmlu", "Question Answering"),
    ("answerable_unanswerable", "Answerability Classification"),
    ("crows-pairs", "Stereotype Detection"),
    ("classification_toxicity", "Toxic Language Detection"),
    ("detoxifying-lms", "Text Quality Evaluation"),
    ("odd-man-out", "Word Semantics"),
    ("paraphrasing", "Paraphrasing"),
    ("story_cloze", "Story Composition"),
    ("coda-19", "Section Classification"),
    ("wikitext-103_answer_generation", "Title Generation"),
    ("fill_in_the_blank", "Fill in The Blank"),
    ("missing_word_prediction", "Fill in The Blank"),
    ("text_auto_completion", "Text Completion"),
    ("named_entity_recognition", "Named Entity Recognition"),
    ("svamp", "Mathematics"),
    ("sentiment_analysis", "Sentiment Analysis"),
    ("similarity_classification", "Text Matching"),
    ("scitail", "Textual Entailment"),
    ("question_generation", "Question Generation"),
    ("answer_generation", "Question Answering"),
    ("europarl", "Language Identification"),
    ("hindienglish_corpora", "Language Identification"),
    ("eng_guj_parallel_corpus", "Language Identification"),
)

FLAN_TO_PAPER = {
    "Natural Language Inference": "Textual Entailment",
    "Closed-Book QA": "Question Answering",
    "Extractive QA": "Question Answering",
    "Adversarial QA": "Question Answering",
    "Mathematical QA": "Question Answering",
    "Multiple-Choice QA (no trivia knowledge required)": "Question Answering",
    "Topic Classification": "Text Categorization",
    "Paraphrasing Identification": "Text Matching",
    "Structured Data to Text": "Data to Text",
    "Grammatical Acceptability": "Grammar Error Detection",
    "Word Sense Disambiguation": "Word Semantics",
    "Dialog Turn Prediction": "Dialogue Generation",
    "Next Sentence Prediction": "Text Completion",
    "Hate Speech Detection": "Toxic Language Detection",
}

# FLAN datasets whose FLAN category the paper overrides (COPA is Cause Effect Classification in Table 15; STS-B is
# similarity, not sentiment).
FLAN_DATASET_CATEGORIES = {"copa": "Cause Effect Classification", "stsb": "Text Matching",
                           "wsc273": "Coreference Resolution", "trivia_qa": "Question Answering",
                           "para_crawl": "Translation"}

_QA = "Question Answering"
# PromptSource top-level dataset (or "dataset/subset") -> paper category.
PROMPTSOURCE_CATEGORIES = {
    "Zaid/coqa_expanded": _QA, "Zaid/quac_expanded": _QA, "acronym_identification": "Named Entity Recognition",
    "ade_corpus_v2": "Information Extraction", "adversarial_qa": _QA, "aeslc": "Summarization",
    "ag_news": "Text Categorization", "ai2_arc": _QA, "amazon_polarity": "Sentiment Analysis",
    "amazon_reviews_multi": "Sentiment Analysis", "amazon_us_reviews": "Sentiment Analysis", "ambig_qa": _QA,
    "anli": "Textual Entailment", "app_reviews": "Sentiment Analysis", "aqua_rat": _QA,
    "art": "Commonsense Classification", "asnq": "Answer Verification", "asset/ratings": "Text Quality Evaluation",
    "asset/simplification": "Text Simplification", "banking77": "Intent Identification", "billsum": "Summarization",
    "bing_coronavirus_query_set": "Text Categorization", "biosses": "Text Matching",
    "blbooksgenre": "Text Categorization", "blended_skill_talk": "Dialogue Generation", "cbt": "Fill in The Blank",
    "cc_news": "Title Generation", "circa": "Answer Verification", "climate_fever": "Fact Verification",
    "cnn_dailymail": "Summarization", "codah": _QA, "code_x_glue_tc_text_to_code": "Text to Code",
    "common_gen": "Data to Text", "commonsense_qa": _QA, "conv_ai": "Text Quality Evaluation",
    "conv_ai_2": "Dialogue Generation", "conv_ai_3": "Question Generation", "coqa": _QA,
    "cord19": "Title Generation", "cos_e": _QA, "cosmos_qa": _QA, "covid_qa_castorini": _QA,
    "craffel/openai_lambada": "Text Completion", "craigslist_bargains": "Negotiation Strategy Detection",
    "crows_pairs": "Stereotype Detection", "dbpedia_14": "Text Categorization", "discofuse": "Sentence Composition",
    "discovery": "Discourse Connective Identification", "docred": "Information Extraction", "dream": _QA,
    "drop": _QA, "duorc": _QA, "e2e_nlg_cleaned": "Data to Text", "ecthr_cases": "Text Categorization",
    "emo": "Sentiment Analysis", "emotion": "Sentiment Analysis", "enriched_web_nlg": "Data to Text",
    "esnli": "Textual Entailment", "evidence_infer_treatment": "Information Extraction",
    "fever": "Fact Verification", "financial_phrasebank": "Sentiment Analysis", "freebase_qa": _QA,
    "generated_reviews_enth": "Textual Entailment", "gigaword": "Summarization", "glue/ax": "Textual Entailment",
    "glue/cola": "Grammar Error Detection", "glue/mnli": "Textual Entailment",
    "glue/mnli_matched": "Textual Entailment", "glue/mnli_mismatched": "Textual Entailment",
    "glue/mrpc": "Text Matching", "glue/qnli": "Textual Entailment", "glue/qqp": "Text Matching",
    "glue/rte": "Textual Entailment", "glue/sst2": "Sentiment Analysis", "glue/stsb": "Text Matching",
    "glue/wnli": "Coreference Resolution", "google_wellformed_query": "Text Quality Evaluation",
    "great_code": "Program Execution", "guardian_authorship": "Text Categorization",
    "gutenberg_time": "Information Extraction", "hans": "Textual Entailment",
    "hate_speech18": "Toxic Language Detection", "head_qa": _QA, "health_fact": "Fact Verification",
    "hellaswag": "Text Completion", "hlgd": "Text Matching", "hotpot_qa": _QA,
    "humicroedit": "Text Quality Evaluation", "hyperpartisan_news_detection": "Text Categorization",
    "imdb": "Sentiment Analysis", "jfleg": "Grammar Error Correction",
    "jigsaw_unintended_bias": "Toxic Language Detection", "kelm": "Data to Text", "kilt_tasks": _QA,
    "lama": "Fill in The Blank", "lambada": "Text Completion", "liar": "Fact Verification",
    "limit": "Information Extraction", "math_dataset": "Mathematics", "math_qa": "Mathematics", "mc_taco": _QA,
    "mdd": "Dialogue Generation", "medal": "Word Semantics", "medical_questions_pairs": "Text Matching",
    "meta_woz": "Dialogue Generation", "mocha": "Text Quality Evaluation", "movie_rationales": "Sentiment Analysis",
    "multi_news": "Summarization", "multi_nli": "Textual Entailment", "multi_x_science_sum": "Summarization",
    "mwsc": "Coreference Resolution", "narrativeqa": _QA, "ncbi_disease": "Named Entity Recognition",
    "neural_code_search": "Text to Code", "newspop": "Text Categorization",
    "nlu_evaluation_data": "Intent Identification", "nq_open": _QA, "numer_sense": "Fill in The Blank",
    "onestop_english": "Text Categorization", "openai_humaneval": "Text to Code", "openbookqa": _QA,
    "paws-x": "Text Matching", "paws": "Text Matching", "piqa": _QA, "poem_sentiment": "Sentiment Analysis",
    "pubmed_qa": _QA, "qa_srl": _QA, "qa_zre": "Information Extraction", "qasc": _QA, "qed": _QA, "quac": _QA,
    "quail": _QA, "quarel": _QA, "quartz": _QA, "quora": "Text Matching", "quoref": _QA, "race": _QA,
    "riddle_sense": _QA, "ropes": _QA, "rotten_tomatoes": "Sentiment Analysis", "samsum": "Summarization",
    "scan": "Text to Code", "scicite": "Text Categorization", "scientific_papers": "Summarization", "sciq": _QA,
    "scitail": "Textual Entailment", "scitldr": "Summarization", "selqa": "Answer Verification",
    "sem_eval_2010_task_8": "Entity Relation Classification", "sem_eval_2014_task_1": "Textual Entailment",
    "sent_comp": "Sentence Compression", "sick": "Textual Entailment", "sms_spam": "Spam Classification",
    "snips_built_in_intents": "Intent Identification", "snli": "Textual Entailment", "social_i_qa": _QA,
    "species_800": "Named Entity Recognition", "squad": _QA, "squad_adversarial": _QA, "squad_v2": _QA,
    "squadshifts": _QA, "sst": "Sentiment Analysis", "story_cloze": "Text Completion",
    "stsb_multi_mt": "Text Matching", "subjqa": _QA, "super_glue/axb": "Textual Entailment",
    "super_glue/axg": "Coreference Resolution", "super_glue/boolq": _QA, "super_glue/cb": "Textual Entailment",
    "super_glue/copa": "Cause Effect Classification", "super_glue/multirc": _QA, "super_glue/record": _QA,
    "super_glue/rte": "Textual Entailment", "super_glue/wic": "Word Semantics",
    "super_glue/wsc.fixed": "Coreference Resolution", "swag": "Text Completion", "tab_fact": "Fact Verification",
    "tmu_gfm_dataset": "Grammar Error Correction", "trec": "Question Understanding", "trivia_qa": _QA,
    "turk": "Text Simplification", "tweet_eval/emoji": "Sentiment Analysis", "tweet_eval/emotion": "Sentiment Analysis",
    "tweet_eval/hate": "Toxic Language Detection", "tweet_eval/irony": "Irony Detection",
    "tweet_eval/offensive": "Toxic Language Detection", "tweet_eval/sentiment": "Sentiment Analysis",
    "tweet_eval": "Stance Detection", "tydiqa": _QA, "web_questions": _QA, "wiki_bio": "Data to Text",
    "wiki_hop": _QA, "wiki_qa": "Answer Verification", "wiki_split": "Sentence Perturbation",
    "wino_bias": "Stereotype Detection", "winograd_wsc": "Coreference Resolution",
    "winogrande": "Coreference Resolution", "wiqa": _QA, "xnli": "Textual Entailment", "xquad": _QA, "xquad_r": _QA,
    "xsum": "Summarization", "yahoo_answers_qa": _QA, "yahoo_answers_topics": "Text Categorization",
    "yelp_polarity": "Sentiment Analysis", "yelp_review_full": "Sentiment Analysis", "zest": _QA,
}

EVAL_CATEGORY_OVERRIDES = {"niv2_task1664_winobias_text_generation": "Stereotype Detection"}

_SOURCE_ALIASES = {"bool_q": "boolq", "mmmlu": "mmlu", "squad_v1": "squad", "squad1_1": "squad", "ai2_arc": "arc",
                   "arc_challenge": "arc", "arc_easy": "arc", "story_cloze_2016": "story_cloze",
                   "winograd_wsc": "wsc273", "wsc_fixed": "wsc", "anli_r1": "anli", "anli_r2": "anli",
                   "anli_r3": "anli", "race_all": "race", "race_high": "race", "race_middle": "race",
                   "e2e_nlg_cleaned": "e2e_nlg", "imdb_reviews": "imdb", "yelp_polarity_reviews": "yelp_polarity",
                   "ag_news_subset": "ag_news", "wino_bias": "winobias", "glue_mrpc": "mrpc", "glue_qqp": "qqp",
                   "paws_wiki": "paws", "multi_nli": "mnli", "jigsaw_unintended_bias": "jigsaw",
                   "cnn_dailymail_3_0_0": "cnn_dailymail", "openbookqa_main": "openbookqa",
                   "openbookqa_additional": "openbookqa", "copa_hr": "copa_hr", "piqa": "piqa"}


def normalize_source(source: str) -> str:
    """A comparable data-source key: lowercase, '_' separators, GLUE/SuperGLUE prefixes dropped, aliases merged."""
    s = re.sub(r"[^0-9a-z]+", "_", source.lower()).strip("_")
    s = re.sub(r"^(super_glue|superglue|glue)_", "", s)
    return _SOURCE_ALIASES.get(s, s)


def niv2_category(task_stem: str, tsv_category: str) -> tuple[str, str]:
    """(paper category, original category) of one NIv2 task."""
    name = "niv2_" + task_stem
    if name in EVAL_CATEGORY_OVERRIDES:
        return EVAL_CATEGORY_OVERRIDES[name], tsv_category
    if tsv_category and tsv_category != "NA":
        return (tsv_category if tsv_category in NIV2_TAXONOMY else "Misc."), tsv_category
    for key, cat in NIV2_NAME_RULES:
        if key in task_stem:
            return cat, "NA"
    raise ValueError(f"NIv2 task {task_stem!r} has no category and matches no NIV2_NAME_RULES keyword")


def flan_category(dataset: str, flan_generic: str | None) -> str:
    if dataset in FLAN_DATASET_CATEGORIES:
        return FLAN_DATASET_CATEGORIES[dataset]
    if not flan_generic:
        raise ValueError(f"FLAN dataset {dataset!r} has no category")
    return FLAN_TO_PAPER.get(flan_generic, flan_generic)


def promptsource_category(dataset_key: str) -> str:
    if dataset_key in PROMPTSOURCE_CATEGORIES:
        return PROMPTSOURCE_CATEGORIES[dataset_key]
    top = dataset_key.split("/")[0]
    if top in PROMPTSOURCE_CATEGORIES:
        return PROMPTSOURCE_CATEGORIES[top]
    raise ValueError(f"PromptSource dataset {dataset_key!r} is missing from PROMPTSOURCE_CATEGORIES")
