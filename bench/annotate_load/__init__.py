"""Load benchmark of the annotator API: many annotators at once over HTTP, gunicorn on PostgreSQL.

    .venv/bin/python -m bench.annotate_load [--annotators 50] [--seconds 20] [--rate 100] [--k 3]
                                            [--campaign SLUG] [--gold-rate R]

With ``--gold-rate`` the served campaign mixes gold items into the cards at that rate (enough gold
items are seeded that nobody runs out); ``DUET_BENCH_DB`` names another database than ``duet_bench``.

It creates (or reuses) the PostgreSQL database ``duet_bench`` on 127.0.0.1, migrates it, fills
it with annotators, API tokens, a history of judged comparisons and open ones, starts gunicorn (``config.wsgi`` with
``bench.settings``: the project's settings plus one trivial view) and runs four phases of
``--seconds`` each:

1. closed loop, peer: ``--annotators`` clients loop ``GET /api/bench/trivial`` (one query);
2. closed loop, Duet: the same number of annotators loop ``next`` then ``judge`` (random choice),
   no think time;
3. open loop, peer: trivial requests at ``2 * --rate`` per second (Poisson arrivals);
4. open loop, Duet: ``--rate`` judgements per second, Poisson arrivals, each one an idle
   annotator's ``next`` then ``judge``; latency counts from the scheduled time, so a slow server
   cannot hide its queueing by slowing the client down.

The server runs as ``manage.py serve`` runs it (gthread, 2 workers x 4 threads by default) with
persistent database connections. The machine's speed drifts (2 cores shared with other work), so
every Duet number comes with its ratio to the peer measured the same way in the same run, and each
phase prints where the CPU went (gunicorn, PostgreSQL, the load generator, everything else) from
``/proc``. After the server stops, SQL checks the invariants: no comparison over k judgements,
``judgement_count`` equal to the real rows, nobody judging a comparison twice, and exactly one
row for every 201 the clients got. The database is dropped at the end unless ``--keep-db``.
"""
