// Copyright 2026 the @rfc6455/websocket authors. MIT license.
/**
 * The echo service for edge platforms (Deno Deploy): the same handler as
 * `echo.ts`, on `Deno.serve` + `Deno.upgradeWebSocket`. Deploy this file as
 * the entry point, or run it locally with `deno task echo-edge`. It has no
 * compression and no ping API: those are the runtime's limits.
 *
 * @module
 */

import { createFetchHandler } from "../server.ts";
import { echoHandler } from "./echo_handler.ts";

const handler = createFetchHandler({
  insecureSkipOriginCheck: true,
  protocols: (offered) => offered[0],
}, echoHandler);

export default { fetch: handler } satisfies Deno.ServeDefaultExport;
