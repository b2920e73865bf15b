/**
 * Entry point of the ferry client: `deno run ... client.ts`, or the compiled `ferry` binary.
 * Everything lives in lib/client_cli.ts.
 *
 * @module
 */

import { clientMain } from "./lib/client_cli.ts";

if (import.meta.main) Deno.exit(await clientMain(Deno.args));
