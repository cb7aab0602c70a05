"""Evaluation: embedding quality (cross-view correspondence) and, later, part mIoU."""
