"""RLAIF: a constitution of principles and a judge LM that turn response pairs into preference data."""

from trl_ext.rlaif.audit import audit_judge, human_agreement, plot_calibration, report_section
from trl_ext.rlaif.constitution import Constitution, ConstitutionError, Principle
from trl_ext.rlaif.labeler import ConstitutionalLabeler
from trl_ext.rlaif.preferences import label_responses, save_rows
from trl_ext.rlaif.prompts import fence, judge_prompt
from trl_ext.rlaif.verdicts import PairLabel

__all__ = [
    "Constitution",
    "ConstitutionError",
    "ConstitutionalLabeler",
    "PairLabel",
    "Principle",
    "audit_judge",
    "fence",
    "human_agreement",
    "judge_prompt",
    "label_responses",
    "plot_calibration",
    "report_section",
    "save_rows",
]
