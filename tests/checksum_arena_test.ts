/**
 * Integration test of the client's memory for checksums: it reserves a small arena, so it keeps
 * hashing in place where the server's 256 MiB would not fit.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  evalUnderV8Flags,
  filesEqual,
  makeTempDir,
  startServer,
  writeRandomFile,
} from "./harness.ts";

const MiB = 1 << 20;

Deno.test("the client reserves a small checksum arena, so it keeps hashing in place where 256 MiB would fail", async () => {
  // V8's cap on WebAssembly memory (about 62 MiB here) stands in for a system that will not
  // commit the server's 256 MiB arena: a client that asked for that much would get none.
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${work.path}/up.bin`, 3 * MiB + 12345);
  const client = (args: string[]) =>
    JSON.stringify(["-q", server.host, String(server.port), ...args]);
  const script = `
    import { clientMain } from "./lib/client_cli.ts";
    import { hashArena } from "./lib/xxh3.ts";
    const put = await clientMain(${client(["put", `${work.path}/up.bin`, "up.bin"])});
    const get = await clientMain(${client(["get", "up.bin", `${work.path}/back.bin`])});
    console.log(JSON.stringify({ put, get, arena: hashArena()?.length ?? null }));
  `;
  const printed = await evalUnderV8Flags("--wasm-max-mem-pages=1000", script);
  assert.deepEqual(printed, { put: 0, get: 0, arena: 8 * MiB });
  assert.ok(await filesEqual(`${work.path}/up.bin`, `${server.root}/up.bin`), "uploaded intact");
  assert.ok(await filesEqual(`${work.path}/up.bin`, `${work.path}/back.bin`), "round trip");
});
