/**
 * Entry point of the ferry server: `deno task serve`, or the compiled `ferry-server` binary.
 * Everything lives in lib/server_cli.ts.
 *
 * @module
 */

import { serverMain } from "./lib/server_cli.ts";

if (import.meta.main) Deno.exit(await serverMain(Deno.args));
