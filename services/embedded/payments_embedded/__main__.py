"""`python -m payments_embedded` (what `make run` runs): every route and worker in one process on $PORT."""

from __future__ import annotations

import logging
import sys

from payments_shared import logging as json_logging
from payments_shared.http.serve import serve
from payments_shared.process import run_or_exit
from payments_shared.settings import ConfigError
from payments_shared.tracing import configure_telemetry

from payments_embedded.settings import EmbeddedSettings

logger = logging.getLogger("payments_embedded")


async def run(settings: EmbeddedSettings) -> None:
    from payments_embedded.app import start_system  # after settings: a config error needs none of this

    system = await start_system(settings)
    try:
        logger.info(
            "embedded mode listening",
            extra={
                "port": settings.gateway.port,
                "broker": settings.gateway.broker_url.split("://", 1)[0],
                "eventstore": settings.gateway.eventstore_uri.split("://", 1)[0],
            },
        )
        await serve(system.app, settings.gateway, longest_request_s=settings.gateway.rpc_timeout_s)
    finally:
        await system.close()
        logger.info("embedded mode stopped")


def main() -> None:
    try:
        settings = EmbeddedSettings.from_environment()
    except ConfigError as error:
        print(error.line, file=sys.stderr)
        raise SystemExit(2) from None
    json_logging.configure(settings.gateway.log_level)
    configure_telemetry("payments-embedded")
    json_logging.register_secret(settings.gateway.payments_jwt_secret)
    run_or_exit(run(settings))


if __name__ == "__main__":
    main()
