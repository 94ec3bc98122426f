"""The one place where trio meets asyncio.

redis-py's async client and nats-py are asyncio libraries. The services run on trio and reach
them only through this package: ``open_bridge()`` runs an asyncio loop inside trio for the
lifetime of a service, and the gateways (``RedisGateway`` here, ``shared.nats.JetStream``) expose
trio-callable methods that each cross into asyncio once per batch of work, never once per
message.
"""

from shared.bridge.loop import open_bridge
from shared.bridge.redis_io import (
    RedisAuthenticationError,
    RedisError,
    RedisGateway,
    ScriptCall,
)

__all__ = [
    "RedisAuthenticationError",
    "RedisError",
    "RedisGateway",
    "ScriptCall",
    "open_bridge",
]
