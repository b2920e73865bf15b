/**
 * Helpers of the HTTP side's tests: a server started with `--http 127.0.0.1:0` and its base URL,
 * curl where it is installed, a raw PUT the test can cut or leave idle, and a SHA-256 digest as
 * the Content-Digest header spells it.
 *
 * @module
 */

import { commandWorks, runCommand } from "./harness.ts";

const decoder = new TextDecoder();

export const HAS_CURL = await commandWorks("curl", ["--version"]);

export async function curl(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await runCommand("curl", ["-sS", "--max-time", "30", ...args]);
  return { code: result.code, stdout: decoder.decode(result.stdout), stderr: result.stderr };
}

/**
 * The status of `METHOD PATH` sent as-is over a raw connection, its path never normalized: with
 * the `host` given (default the server's own) and any `headers` more.
 */
export async function rawStatus(
  base: string,
  method: string,
  path: string,
  options: { host?: string; headers?: Record<string, string> } = {},
): Promise<number> {
  const url = new URL(base);
  using conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  let head = `${method} ${path} HTTP/1.1\r\nHost: ${options.host ?? url.host}\r\n`;
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    head += `${name}: ${value}\r\n`;
  }
  const bytes = new TextEncoder().encode(head + "Connection: close\r\n\r\n");
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
  const buffer = new Uint8Array(64);
  let filled = 0;
  while (filled < 12) {
    const n = await conn.read(buffer.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(decoder.decode(buffer))?.[1] ?? 0);
}
