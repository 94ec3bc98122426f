"""Redis from trio: the one ``REDIS_URL`` parser (``address``), the one RESP connection
(``resp``), the pub/sub subscriber (``pubsub``), scripts on one server (``script_lines``),
``CLUSTER NODES`` (``cluster_nodes``), and every private access to redis-py (``_internals``).
redis-py's own client, behind the bridge, serves the rest (``shared.bridge.RedisGateway``)."""
