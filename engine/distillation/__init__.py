"""Knowledge distillation: what pulls a student toward a teacher, and where students come from.

- ``losses``: the shared training loop's losses (cross-entropy, Hinton soft targets, embedding
  and hidden-state matching) and the cosine it validates embedding students with.
- ``students``: smaller students derived from the teacher and initialized from its weights
  (fewer layers, narrower MLP, fewer channels).
- ``teacher_cache``: the frozen teacher's outputs per training row, computed once and reused by
  later epochs.

The loop itself is ``engine.training.fit``; the ``distill`` pass (``engine/passes/distill.py``)
picks the student and calls it. Options and measured results: ``docs/methods/distill.md``.
"""
