/**
 * Smoke test of a pair of built binaries, run by the release workflow on each runner that can
 * execute them: both answer `--version` with this checkout's version, and a put and a get
 * between them on loopback round-trip a file byte for byte.
 *
 * Usage: `deno run --allow-run --allow-read --allow-write scripts/smoke_release.ts BIN_DIR`,
 * where BIN_DIR holds `ferry` and `ferry-server` (`.exe` on Windows). Exits 0 when all is well,
 * otherwise 1 with a line saying what failed.
 *
 * @module
 */

import { NAME, VERSION } from "../lib/version.ts";

const decoder = new TextDecoder();
const BANNER = /serving .+ on (?:\[[^\]]+\]|[^\s:]+):(\d+)/;

class SmokeFailure extends Error {}

function check(ok: boolean, what: string): void {
  if (!ok) throw new SmokeFailure(what);
}

async function run(binary: string, args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command(binary, { args, cwd, stdin: "null" }).output();
  const stderr = decoder.decode(out.stderr).trim();
  check(out.code === 0, `${binary} ${args.join(" ")} exited ${out.code}: ${stderr}`);
  return decoder.decode(out.stdout);
}

/**
 * Reads stderr lines until the banner gives the port, within `ms`; `rest` is everything it
 * prints after that, once it ends.
 */
async function portFrom(
  stderr: ReadableStream<Uint8Array>,
  ms: number,
): Promise<{ port: number; rest: Promise<string> }> {
  const reader = stderr.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => reader.cancel(), ms);
  let text = "";
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      text += value;
      const match = BANNER.exec(text);
      if (match) {
        clearTimeout(timer);
        const rest = (async () => {
          let more = text.slice(match.index + match[0].length);
          for (let r = await reader.read(); !r.done; r = await reader.read()) more += r.value;
          return more;
        })();
        return { port: Number(match[1]), rest };
      }
    }
  } finally {
    clearTimeout(timer);
  }
  reader.releaseLock();
  throw new SmokeFailure(`the server printed no banner within ${ms / 1000} s: ${text.trim()}`);
}

async function smoke(binDir: string): Promise<void> {
  const exe = Deno.build.os === "windows" ? ".exe" : "";
  const client = `${binDir}/${NAME}${exe}`;
  const server = `${binDir}/${NAME}-server${exe}`;
  const work = await Deno.makeTempDir({ prefix: "ferry_smoke_" });
  try {
    check(
      (await run(client, ["--version"], work)).trim() === `${NAME} ${VERSION}`,
      "ferry --version",
    );
    check(
      (await run(server, ["--version"], work)).trim() === `${NAME}-server ${VERSION}`,
      "ferry-server --version",
    );
    const data = new Uint8Array(3 * 1024 * 1024 + 4321);
    for (let i = 0; i < data.length; i += 65536) {
      crypto.getRandomValues(data.subarray(i, Math.min(data.length, i + 65536)));
    }
    await Deno.writeFile(`${work}/up.bin`, data);
    const child = new Deno.Command(server, {
      args: ["0", "--root", `${work}/root`],
      cwd: work,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let said: Promise<string> | undefined;
    try {
      const started = await portFrom(child.stderr, 30_000);
      said = started.rest;
      const port = String(started.port);
      await run(client, ["-q", "127.0.0.1", port, "put", "up.bin", "smoke.bin"], work);
      await run(client, ["-q", "127.0.0.1", port, "get", "smoke.bin", "back.bin"], work);
      const listed = await run(client, ["127.0.0.1", port, "list"], work);
      check(listed.includes("smoke.bin"), `list shows smoke.bin: ${listed.trim()}`);
      const stored = await Deno.readFile(`${work}/root/smoke.bin`);
      const back = await Deno.readFile(`${work}/back.bin`);
      check(equal(stored, data), "the server stored the upload intact");
      check(equal(back, data), "the download matches the upload");
      // A folder there and back: the server walks and reads it on its disk threads.
      await Deno.mkdir(`${work}/tree/inner`, { recursive: true });
      await Deno.writeFile(`${work}/tree/inner/small.bin`, data.subarray(0, 1000));
      await run(client, ["-q", "127.0.0.1", port, "put", "-r", "tree"], work);
      await run(client, ["-q", "127.0.0.1", port, "get", "-r", "tree", "tree-back"], work);
      const small = await Deno.readFile(`${work}/tree-back/inner/small.bin`);
      check(equal(small, data.subarray(0, 1000)), "a folder comes back as it went");
    } finally {
      try {
        child.kill("SIGTERM");
      } catch {
        child.kill("SIGKILL");
      }
      await child.status;
      if (!said) await child.stderr.cancel().catch(() => {});
    }
    const log = await said;
    check(!log?.includes("disk threads unavailable"), `the server's disk threads ran: ${log}`);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

if (import.meta.main) {
  const [binDir] = Deno.args;
  if (!binDir || Deno.args.length > 1) {
    console.error("Usage: smoke_release.ts BIN_DIR");
    Deno.exit(2);
  }
  try {
    await smoke(binDir);
    console.log(`smoke test passed: ${binDir}`);
  } catch (error) {
    if (!(error instanceof SmokeFailure)) throw error;
    console.error(`smoke test failed: ${binDir}: ${error.message}`);
    Deno.exit(1);
  }
}
