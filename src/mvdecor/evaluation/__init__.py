"""Evaluation: scorers that train nothing: part and shape mIoU (:class:`SegmentationEvaluator`),
correspondence accuracy of an embedding. The few-shot protocol that trains and scores is
:mod:`mvdecor.protocols.fewshot`."""
