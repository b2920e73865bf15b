/**
 * Builds the two programs as single binaries with `deno compile`: `deno task compile` for this
 * machine, and the release workflow (.github/workflows/release.yml) for each target. The
 * programs, their entry points and the permissions compiled into them are declared here once.
 *
 * Usage: `deno task compile [--target TRIPLE] [--out DIR] [--dry-run]`. Without `--out`, the
 * binaries go to dist/ (dist/TRIPLE/ with a target). `--dry-run` prints the commands, one JSON
 * array a line, instead of running them.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** A program the project ships: its binary's name and its entry point. */
export interface Program {
  /** Binary name, without `.exe`. */
  name: string;
  /** Entry point, relative to the repository root. */
  entry: string;
  /**
   * Modules the binary loads that its imports do not name, relative to the repository root:
   * a worker's script (`deno compile` leaves workers out unless told).
   */
  include?: readonly string[];
}

/** The shipped programs. */
export const PROGRAMS: readonly Program[] = [
  { name: "ferry", entry: "client.ts" },
  // The server's disk threads (lib/disk_pool.ts) run this script.
  { name: "ferry-server", entry: "server.ts", include: ["lib/disk_worker.ts"] },
];

/**
 * Permissions compiled into both binaries: the network, reading and writing files (the server's
 * root, the client's local files), the variables that locate the user's folders (the client's
 * known servers, the TLS key of `ferry-server --tls`), and this machine's name and addresses (named
 * in that key's certificate). Neither runs programs, reads other variables or loads code at run
 * time.
 */
export const COMPILE_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env=HOME,XDG_CONFIG_HOME,XDG_STATE_HOME,APPDATA,LOCALAPPDATA",
  "--allow-sys=hostname,networkInterfaces",
];

/** Targets the release workflow builds, as `deno compile --target` names them. */
export const RELEASE_TARGETS: readonly string[] = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
];

/** The `deno compile` arguments that build `program` into `outDir`. */
export function compileArgs(program: Program, outDir: string, target?: string): string[] {
  return [
    "compile",
    ...COMPILE_PERMISSIONS,
    ...(target ? ["--target", target] : []),
    ...(program.include ?? []).flatMap((path) => ["--include", path]),
    "--output",
    `${outDir}/${program.name}`,
    program.entry,
  ];
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      target: { type: "string" },
      out: { type: "string" },
      "dry-run": { type: "boolean" },
    },
  });
  const target = values.target;
  if (target !== undefined && !RELEASE_TARGETS.includes(target)) {
    console.error(
      `compile: unknown target ${JSON.stringify(target)}: ${RELEASE_TARGETS.join(", ")}`,
    );
    return 2;
  }
  const outDir = values.out ?? (target ? `dist/${target}` : "dist");
  for (const program of PROGRAMS) {
    const args = compileArgs(program, outDir, target);
    if (values["dry-run"]) {
      console.log(JSON.stringify(["deno", ...args]));
      continue;
    }
    const { code } = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: new URL("..", import.meta.url),
      stdin: "null",
    }).spawn().status;
    if (code !== 0) return code;
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
