"""Candidate generation at the coordinator: Hamming LSH over the filters.

The coordinator never holds the linkage secret, so it cannot block on names or
dates.  It blocks on the filters themselves, by *bit sampling* (the Hamming
LSH of Indyk and Motwani, used for Bloom-filter PPRL as "HLSH" by Karapiperis
and Verykios): ``bands`` (L) bands, each the values of ``rows`` (r) filter
bit positions drawn at random (a seeded generator, so every run and every
worker draws the same positions).  Two records are *candidates* when their r
sampled bits are equal in at least one band.

The modules, one per concern:

* ``params``: ``LshParams`` (the choice of r and L, with its reasons) and
  ``BlockingStats``;
* ``keys``: the sampled bit positions and each record's key in each band;
* ``candidates``: two departments' buckets, pairs and de-duplication
  (``lsh_candidates``, ``slice_candidates``);
* ``scoring``: candidates scored and tested as the exact kernel tests them
  (``score_candidates``, ``lsh_links``);
* ``multi``: every department pair in one pass over the bands
  (``lsh_links_multi``; the run's blocked path).

The passes cut their work into tasks run by a ``server.blocking.tasks.Tasks``
(threads in process by default; an engine supplies its own, ``server.engine``).
"""
