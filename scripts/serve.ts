/**
 * What `deno task serve` runs: starts server.ts with exactly the file access its options need
 * (the served folder, and the token, certificate and key files it was given). Everything lives
 * in lib/server_launch.ts.
 *
 * @module
 */

import { launchServer } from "../lib/server_launch.ts";

if (import.meta.main) Deno.exit(await launchServer(Deno.args));
