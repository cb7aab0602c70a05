"""Protocols: experiments that train, segment and score, built on the layers below.

:mod:`~mvdecor.protocols.fewshot` is the few-shot protocol (labelled draws,
fine-tuning per method, segmenting the test shapes, part mIoU over runs) behind
``mvdecor fewshot``, the demo and ``benchmarks/fewshot.py``. The scorers it uses
stay in :mod:`mvdecor.evaluation`, which trains nothing.
:mod:`~mvdecor.protocols.stages` is the one cache of finished stages that the
protocol and the demo share. :mod:`~mvdecor.protocols.refinements` checks the
refinement variants that score one run's networks with other segment settings.
"""
