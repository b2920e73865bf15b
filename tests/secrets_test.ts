/**
 * Integration tests of the server's secrets and `deno task serve` (issue 13): the task, run as a
 * user runs it, serves with a token and TLS files kept outside the root and grants the server
 * only the root and those files; a token, certificate or key inside the served folder (real
 * paths compared) stops the server in one line; a symlink in the root to a secret or to anything
 * outside is refused; and a refusal by Deno's permissions is one line that says what to do.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertSuccess,
  collectLines,
  ferry,
  makeTempDir,
  REPO_ROOT,
  runCommand,
  type RunResult,
  SERVER_BANNER,
  spawnServing,
  waitFor,
} from "./harness.ts";
import { makePki, tlsArgs } from "./pki.ts";
import { dataWithEnd, Wire } from "./wire.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { DISK_THREAD_MODULES } from "../lib/disk_pool.ts";
import { fileURLToPath as fromFileUrl } from "node:url";

const decoder = new TextDecoder();

/** `deno task -q serve ARGS` from the repository, as a user would type it. */
function serveTaskCommand(args: string[]): [string, string[]] {
  return [Deno.execPath(), ["task", "-q", "serve", ...args]];
}

/** Runs the serve task to completion (for command lines that must not start). */
function runServeTask(args: string[]): Promise<RunResult> {
  const [program, taskArgs] = serveTaskCommand(args);
  return runCommand(program, taskArgs, { cwd: REPO_ROOT, env: { NO_COLOR: "1" } });
}

/** A serve task that has printed its banner. Dispose it to stop it (SIGINT, as Ctrl+C). */
interface ServeTask extends AsyncDisposable {
  host: string;
  port: number;
  /** The `deno task` process. */
  pid: number;
  lines: string[];
  /** Stops it with SIGINT and returns the exit code. */
  stop(): Promise<number>;
  /** Resolves with the exit code once it has ended, however it ended; sends nothing. */
  exited: Promise<number>;
}

async function startServeTask(args: string[]): Promise<ServeTask> {
  const [program, taskArgs] = serveTaskCommand(["0", ...args]);
  const child = spawnServing(program, taskArgs);
  const { lines, done, firstMatch } = collectLines(child.stderr);
  let code: number | undefined;
  const exited = child.status.then(async (status) => {
    code = status.code;
    await done;
    return status.code;
  });
  const stop = async () => {
    if (code === undefined) {
      try {
        child.kill("SIGINT");
      } catch {
        // Already exited.
      }
    }
    return await exited;
  };
  const match = await firstMatch(SERVER_BANNER);
  if (!match) {
    await stop();
    throw new Error(`deno task serve did not start; its stderr was:\n${lines.join("\n")}`);
  }
  return {
    host: match[2] ?? match[3],
    port: Number(match[4]),
    pid: child.pid,
    lines,
    stop,
    exited,
    [Symbol.asyncDispose]: async () => void await stop(),
  };
}

/** The command line of the running server process that serves `root`, split on spaces. */
async function serverProcessArgs(root: string): Promise<string[] | undefined> {
  const ps = await runCommand("ps", ["-eo", "args="]);
  const line = decoder.decode(ps.stdout).split("\n").find((args) =>
    args.includes(`${REPO_ROOT}server.ts`) && args.split(" ").includes(root)
  );
  return line?.split(" ");
}

Deno.test("deno task serve with a token and TLS files outside the root serves, granting the server only those paths", async () => {
  await using pki = await makePki();
  await using dir = await makeTempDir();
  const token = `${dir.path}/ferry.token`;
  await Deno.writeTextFile(token, crypto.randomUUID() + crypto.randomUUID() + "\n");
  // A root elsewhere than ./ferry-data, not there yet: the server makes it.
  const root = `${dir.path}/share`;
  await Deno.writeTextFile(`${dir.path}/hello.txt`, "hello through the task\n");

  await using server = await startServeTask([
    "--root",
    root,
    "--token-file",
    token,
    ...tlsArgs(pki),
  ]);
  assert.ok(!server.lines.some((line) => /^Task /.test(line)), "deno task -q hides the task line");
  const client = ["--tls", "--ca", pki.ca, "--token-file", token];
  assertSuccess(await ferry(server, [...client, "put", `${dir.path}/hello.txt`]), "put");
  const got = await ferry(server, [...client, "get", "hello.txt", "-"]);
  assertSuccess(got, "get");
  assert.equal(decoder.decode(got.stdout), "hello through the task\n");
  const listed = await ferry(server, [...client, "list"]);
  assert.equal(decoder.decode(listed.stdout), "hello.txt\n");

  // The root as given and, if a symlink lies on its way, as it really is.
  const roots = [...new Set([root, await Deno.realPath(root)])];
  const args = await serverProcessArgs(root);
  assert.ok(args, "the server runs as its own process");
  assert.ok(args.includes("--no-prompt"), `never prompts: ${args.join(" ")}`);
  assert.deepEqual(
    args.filter((arg) => /^--allow-(read|write|all)|^-A$/.test(arg)).sort(),
    [
      `--allow-read=${
        [...roots, token, pki.cert, pki.key, ...DISK_THREAD_MODULES.map((u) => fromFileUrl(u))]
          .join(",")
      }`,
      `--allow-write=${roots.join(",")}`,
    ],
    "reads only its root, the three secrets and its disk threads' code, writes only its root",
  );
  // Its disk threads start under those permissions: a folder there and back, and no fallback.
  await Deno.mkdir(`${dir.path}/tree/in`, { recursive: true });
  await Deno.writeTextFile(`${dir.path}/tree/in/a.txt`, "a\n");
  assertSuccess(await ferry(server, [...client, "put", "-r", `${dir.path}/tree`]), "put -r");
  assertSuccess(
    await ferry(server, [...client, "get", "-r", "tree", `${dir.path}/back`]),
    "get -r",
  );
  assert.equal(await Deno.readTextFile(`${dir.path}/back/in/a.txt`), "a\n");
  assert.ok(
    !server.lines.some((line) => /disk threads unavailable|Uncaught/.test(line)),
    server.lines.join("\n"),
  );

  // SIGINT, as Ctrl+C would send: passed on once, so the server stops gracefully.
  assert.equal(await server.stop(), 0, server.lines.join("\n"));
  assert.ok(server.lines.some((line) => /stopping; transfers in flight/.test(line)));
  assert.ok(!server.lines.some((line) => /stopping now/.test(line)), server.lines.join("\n"));
  assert.ok(server.lines.some((line) => /ferry-server: stopped$/.test(line)));
  await waitFor("the server process to be gone", async () => !(await serverProcessArgs(root)));
});

Deno.test("deno task serve: one SIGINT, which deno task passes on twice, still lets an upload finish", async () => {
  await using dir = await makeTempDir();
  const root = `${dir.path}/share`;
  await using server = await startServeTask(["--root", root]);
  const data = new TextEncoder().encode("finished in the grace period\n");
  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(
    encodeControl(FrameType.REQUEST, { op: "put", name: "held.txt", size: data.length }),
  );
  await wire.expectFrame(FrameType.OK, "upload accepted");

  // deno task sends its child (the launcher) each SIGINT twice, back to back. Usually they come
  // as one; on a busy machine they may be seen apart, as here, and must still be one Ctrl+C.
  const ps = await runCommand("ps", ["-o", "pid=", "--ppid", String(server.pid)]);
  const launcher = Number(decoder.decode(ps.stdout).trim().split("\n")[0]);
  assert.ok(launcher > 0, `the launcher under deno task: ${decoder.decode(ps.stdout)}`);
  Deno.kill(launcher, "SIGINT");
  await new Promise((resolve) => setTimeout(resolve, 50));
  Deno.kill(launcher, "SIGINT");
  await waitFor("the graceful stop", () => server.lines.some((l) => /stopping; transfers/.test(l)));

  await wire.write(await dataWithEnd(data));
  const verdict = await wire.readFrame();
  assert.equal(verdict?.type, FrameType.OK, server.lines.join("\n"));
  // With its last connection gone the server ends by itself: no further signal is sent.
  wire.close();
  assert.equal(await server.exited, 0, server.lines.join("\n"));
  assert.ok(!server.lines.some((line) => /stopping now/.test(line)), server.lines.join("\n"));
  assert.equal(await Deno.readTextFile(`${root}/held.txt`), "finished in the grace period\n");
});

Deno.test("a token, certificate or key inside the served folder stops the server in one line (real paths compared)", async () => {
  await using pki = await makePki();
  await using dir = await makeTempDir();
  const root = `${dir.path}/share`;
  await Deno.mkdir(root);
  const token = `${root}/ferry.token`;
  await Deno.writeTextFile(token, crypto.randomUUID() + "\n");
  // The PKI's own folder served through a symlink: the key is outside by name, inside really.
  await Deno.symlink(pki.key.replace(/\/[^/]+$/, ""), `${dir.path}/pki-link`);
  // A certificate outside by name, reached through a symlinked folder inside the root.
  await Deno.symlink(`${dir.path}`, `${root}/up`);
  const cases: [string, string[], RegExp][] = [
    ["token in the root", ["--root", root, "--token-file", token], /--token-file/],
    ["key under a root given as a symlink", [
      "--root",
      `${dir.path}/pki-link`,
      ...tlsArgs(pki),
    ], /--tls-cert/],
    ["cert named through the root", [
      "--root",
      dir.path,
      "--tls-cert",
      `${root}/up/cert.pem`,
      "--tls-key",
      `${root}/up/key.pem`,
    ], /--tls-cert/],
  ];
  await Deno.copyFile(pki.cert, `${dir.path}/cert.pem`);
  await Deno.copyFile(pki.key, `${dir.path}/key.pem`);
  for (const [what, args, option] of cases) {
    const result = await runServeTask(["0", ...args]);
    assertFailure(result, /^ferry-server: Will not start: .* is inside the served folder /, {
      what,
    });
    assert.match(result.stderr, option, what);
  }
  // The server itself refuses, however it is started: here with deno run and every permission.
  const direct = await runCommand(Deno.execPath(), [
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-write",
    `${REPO_ROOT}server.ts`,
    "0",
    "--root",
    root,
    "--token-file",
    token,
  ]);
  assertFailure(direct, /is inside the served folder/, { what: "server.ts, token in the root" });
  // Nothing was served or made: the token is still the root's only file.
  assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name).sort(), ["ferry.token", "up"]);
});

Deno.test("under deno task serve, symlinks in the root to the token or to files outside are refused", async () => {
  await using dir = await makeTempDir();
  const token = `${dir.path}/ferry.token`;
  await Deno.writeTextFile(token, crypto.randomUUID() + crypto.randomUUID() + "\n");
  await Deno.writeTextFile(`${dir.path}/private.txt`, "not for clients\n");
  const root = `${dir.path}/share`;
  await Deno.mkdir(root);
  await Deno.writeTextFile(`${root}/public.txt`, "for clients\n");
  await Deno.symlink(token, `${root}/leak.token`);
  await Deno.symlink(`${dir.path}/private.txt`, `${root}/private.txt`);

  await using server = await startServeTask(["--root", root, "--token-file", token]);
  const client = ["--token-file", token];
  for (const name of ["leak.token", "private.txt"]) {
    const result = await ferry(server, [...client, "get", name, "-"]);
    assertFailure(result, /^ferry: Refused by server: .*outside the root/, { what: `get ${name}` });
  }
  const listed = await ferry(server, [...client, "list"]);
  assertSuccess(listed, "list");
  assert.equal(decoder.decode(listed.stdout), "public.txt\n", "links leading out are not listed");
});

Deno.test("a server that Deno's permissions refuse a file says so in one line, with what to do", async () => {
  await using dir = await makeTempDir();
  const root = `${dir.path}/share`;
  const token = `${dir.path}/ferry.token`;
  await Deno.writeTextFile(token, crypto.randomUUID() + crypto.randomUUID() + "\n");
  // As the old serve task did: the root granted, the token forgotten.
  const result = await runCommand(Deno.execPath(), [
    "run",
    "--no-prompt",
    "--allow-net",
    `--allow-read=${root}`,
    `--allow-write=${root}`,
    `${REPO_ROOT}server.ts`,
    "0",
    "--root",
    root,
    "--token-file",
    token,
  ]);
  assertFailure(
    result,
    /^ferry-server: Not allowed by Deno's permissions \(read access to .*ferry\.token"\): run it with deno task serve/,
    { what: "token file not granted" },
  );
  assert.doesNotMatch(result.stderr, /run again|--allow-all/);

  // A path Deno cannot put in a permission list is refused by the task in one line.
  const comma = await runServeTask(["0", "--root", `${dir.path}/a,b`]);
  assertFailure(comma, /^ferry-server: Cannot grant the server access to .*a,b: .*comma/, {
    what: "root with a comma",
  });
});

Deno.test("deno task serve with a root or token under /dev or /proc says in one line that Deno opens those only with --allow-all", async () => {
  // Deno refuses these by their place, before it looks for them: nothing needs to exist.
  const cases: [string, string[]][] = [
    ["root under /dev", ["0", "--root", "/dev/ferry-no-such-root"]],
    ["token under /proc", ["0", "--token-file", "/proc/ferry-no-such.token"]],
  ];
  for (const [what, args] of cases) {
    const result = await runServeTask(args);
    assertFailure(
      result,
      /^ferry-server: .*\/(dev|proc)\/ferry-no-such.*: Deno opens device and kernel files \(under \/dev, \/proc, \/sys\) only with --allow-all; use a path outside them$/,
      { what },
    );
    // It was run with deno task serve: advice to do so would send the user in circles.
    assert.doesNotMatch(result.stderr, /run it with deno task serve|run again/, what);
  }
});

Deno.test("deno task serve takes a token from a pipe, as --token-file <(pass show ferry) gives it", async () => {
  await using dir = await makeTempDir();
  const token = `${dir.path}/ferry.token`;
  await Deno.writeTextFile(token, crypto.randomUUID() + crypto.randomUUID() + "\n");
  // A root that is there already: the server checks that the token is not in it.
  const root = `${dir.path}/share`;
  await Deno.mkdir(root);
  // bash hands the task /dev/fd/63, a pipe: it has no real path, and so no place in the root.
  const child = spawnServing("bash", [
    "-c",
    'exec "$0" task -q serve 0 --root "$1" --token-file <(cat "$2")',
    Deno.execPath(),
    root,
    token,
  ]);
  const { lines, done, firstMatch } = collectLines(child.stderr);
  try {
    const match = await firstMatch(SERVER_BANNER);
    assert.ok(match, `the server did not start:\n${lines.join("\n")}`);
    const endpoint = { host: match[2] ?? match[3], port: Number(match[4]) };
    assertSuccess(await ferry(endpoint, ["--token-file", token, "list"]), "list with the token");
  } finally {
    try {
      child.kill("SIGINT");
    } catch {
      // It did not start, and has exited.
    }
    await child.status;
    await done;
  }
});
