/**
 * What `deno task serve` runs: a launcher that gives the server exactly the file access its
 * command line needs, and no more. It parses the server's arguments with the server's own
 * parser, works out the paths (the root to read and write; the token, certificate and key to
 * read), and runs `deno run` on server.ts with those as `--allow-read`/`--allow-write` lists.
 * Deno's permissions are fixed when a process starts and cannot be narrowed to a list later,
 * which is why the server is a second process. The launcher forwards SIGINT, SIGTERM, SIGHUP
 * and SIGQUIT to it and exits with its exit code.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { reportFailure } from "./cli.ts";
import { DISK_THREAD_MODULES } from "./disk_pool.ts";
import { UserError } from "./errors.ts";
import { type ServerAccess, serverAccessOf } from "./server_access.ts";
import { parseServerArgs } from "./server_args.ts";
import { NAME } from "./version.ts";

/** The server's entry point, next to this folder. */
const SERVER_MODULE = fileURLToPath(new URL("../server.ts", import.meta.url));

/**
 * Code the server reads at run time, beyond its imports: its disk threads' script (a Worker's
 * module is read under the process's permissions). Code, not data: granting it shows nothing of
 * the machine's files.
 */
const RUNTIME_MODULES = DISK_THREAD_MODULES.filter((url) => url.protocol === "file:").map((url) =>
  fileURLToPath(url)
);

/** Windows has no sessions or POSIX signals: there Ctrl+C reaches the server directly. */
const POSIX = Deno.build.os !== "windows";

/** Signals passed on to the server; anything else keeps its default effect on the launcher. */
const FORWARDED: readonly Deno.Signal[] = POSIX ? ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] : [];

/**
 * A signal repeated within this many ms is the same one delivered twice, and is passed on once:
 * `deno task` sends its child each SIGINT it gets twice, and a second signal stops the server
 * at once. Usually the two arrive together and Deno reports them as one; on a busy machine not.
 */
const REPEAT_MS = 500;

/**
 * The `deno run` arguments that start the server with `argv` and exactly `access` (and reading
 * its disk threads' code, {@link RUNTIME_MODULES}). `--no-prompt`
 * makes a refused access an error instead of a question on the terminal that would hold the
 * server up. An empty list grants nothing.
 *
 * @example
 * ```ts
 * serverRunArgs(["--root", "/srv/f"], { read: ["/srv/f"], write: ["/srv/f"] });
 * // ["run", "--no-prompt", "--allow-net",
 * //  "--allow-read=/srv/f,.../lib/disk_worker.ts,.../lib/disk_jobs.ts", "--allow-write=/srv/f",
 * //  ".../server.ts", "--root", "/srv/f"]
 * ```
 */
export function serverRunArgs(argv: string[], access: ServerAccess): string[] {
  const list = (flag: string, paths: string[]) => {
    const comma = paths.find((path) => path.includes(","));
    if (comma !== undefined) {
      // Deno's permission lists are comma-separated with no way to escape one.
      throw new UserError(
        `Cannot grant the server access to ${comma}: Deno cannot take a path with a comma ` +
          "in a permission list; rename it",
      );
    }
    return paths.length > 0 ? [`${flag}=${paths.join(",")}`] : [];
  };
  return [
    "run",
    "--no-prompt",
    "--allow-net",
    ...list("--allow-read", [...access.read, ...RUNTIME_MODULES]),
    ...list("--allow-write", access.write),
    ...list("--allow-env", access.env ?? []),
    ...list("--allow-sys", access.sys ?? []),
    SERVER_MODULE,
    ...argv,
  ];
}

/**
 * Runs the server with `argv` under the least permissions its options need, forwarding signals
 * to it; resolves with its exit code. A command line the server cannot run (or `--help`) gets
 * no file access at all, and the server reports it as it always does.
 */
export async function launchServer(argv: string[]): Promise<number> {
  let access: ServerAccess = { read: [], write: [] };
  let args: string[];
  try {
    let cmd;
    try {
      cmd = parseServerArgs(argv);
    } catch {
      cmd = undefined;
    }
    if (cmd?.command === "serve") access = await serverAccessOf(cmd);
    args = serverRunArgs(argv, access);
  } catch (error) {
    return reportFailure(error, { program: `${NAME}-server` });
  }
  // A session of its own: Ctrl+C reaches the launcher, which passes it on once. Sharing the
  // terminal's process group would deliver it twice, and a second signal stops at once.
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
    detached: POSIX,
  }).spawn();
  const forwarders = FORWARDED.map((signal) => {
    let last = -Infinity;
    const forward = () => {
      const now = performance.now();
      if (now - last < REPEAT_MS) return;
      last = now;
      try {
        child.kill(signal);
      } catch {
        // Already gone: its status is on the way.
      }
    };
    Deno.addSignalListener(signal, forward);
    return () => Deno.removeSignalListener(signal, forward);
  });
  try {
    return (await child.status).code;
  } finally {
    forwarders.forEach((remove) => remove());
  }
}
