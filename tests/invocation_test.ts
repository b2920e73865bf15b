/**
 * Integration tests of how the programs are invoked: usage errors, a refused connection, the
 * IPv6 loopback with or without brackets, `--help` and `--version`, and `deno task client`
 * resolving LOCAL against the folder it is run from.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertSuccess,
  assertUsageError,
  closedPort,
  ferry,
  listDir,
  makeTempDir,
  randomBytes,
  REPO_ROOT,
  runClient,
  runCommand,
  type RunResult,
  runServer,
  startServer,
} from "./harness.ts";

Deno.test("usage errors exit 2 with a one-line message and no stack trace", async () => {
  const cases: [string, string[]][] = [
    ["no arguments", []],
    ["a port that is not a number", ["127.0.0.1", "notaport", "list"]],
    ["a port out of range", ["127.0.0.1", "70000", "list"]],
    ["an unknown command", ["127.0.0.1", "9021", "fetch", "x"]],
    ["put - without REMOTE", ["127.0.0.1", "9021", "put", "-"]],
    ["put without LOCAL", ["127.0.0.1", "9021", "put"]],
    ["list with two folders", ["127.0.0.1", "9021", "list", "a", "extra"]],
    ["--overwrite on list", ["127.0.0.1", "9021", "list", "--overwrite"]],
    ["--long on put", ["127.0.0.1", "9021", "put", "x", "--long"]],
    ["--overwrite on get", ["127.0.0.1", "9021", "get", "x", "--overwrite"]],
    ["--force on put", ["--force", "127.0.0.1", "9021", "put", "x"]],
    ["an unknown option", ["127.0.0.1", "9021", "list", "--bogus"]],
    ["put with an empty LOCAL", ["127.0.0.1", "9021", "put", ""]],
    ["put with an empty REMOTE", ["127.0.0.1", "9021", "put", "a.bin", ""]],
    ["get with an empty LOCAL", ["127.0.0.1", "9021", "get", "a.bin", ""]],
    ["a --timeout over setTimeout's limit", ["127.0.0.1", "9021", "list", "--timeout", "3e6"]],
    ["an infinite --timeout", ["127.0.0.1", "9021", "list", "--timeout", "Infinity"]],
  ];
  for (const [what, args] of cases) {
    assertUsageError(await runClient(args), "ferry", { what: `client: ${what}` });
  }
  assertUsageError(await runServer(["notaport"]), "ferry-server", { what: "server: bad port" });
  assertUsageError(await runServer(["--bogus"]), "ferry-server", {
    what: "server: unknown option",
  });
});

Deno.test("connection refused exits 1 with a one-line message", async () => {
  const port = await closedPort();
  await using work = await makeTempDir();

  const list = await runClient(["127.0.0.1", String(port), "list"]);
  assertFailure(list, /refused/i, { what: "list against a closed port" });
  const get = await runClient(["127.0.0.1", String(port), "get", "x.bin"], { cwd: work.path });
  assertFailure(get, /refused/i, { what: "get against a closed port" });
  assert.deepEqual(await listDir(work.path), [], "a failed connection creates no file");
});

Deno.test("the IPv6 loopback address works, with or without brackets", async () => {
  await using server = await startServer({ host: "::1" });
  assert.equal(server.host, "::1");
  assert.ok(server.lines.some((line) => line.includes(`[::1]:${server.port}`)), "banner");
  const data = randomBytes(70000);

  const put = await runClient(["::1", String(server.port), "put", "-", "six.bin"], {
    stdin: data,
  });
  assertSuccess(put, "put over IPv6");
  const get = await runClient(["[::1]", String(server.port), "get", "six.bin", "-"]);
  assertSuccess(get, "get over IPv6 with brackets");
  assert.deepEqual(get.stdout, data);
  const list = await runClient(["::1", String(server.port), "list"]);
  assertSuccess(list, "list over IPv6");
  assert.equal(new TextDecoder().decode(list.stdout), "six.bin\n");
  await server.waitForLog(/\[::1\]:\d+ put "six\.bin" 70000 bytes ok/);
});

Deno.test("--help and --version exit 0 on both programs", async () => {
  for (
    const [program, run, name] of [
      ["client", runClient, "ferry"],
      ["server", runServer, "ferry-server"],
    ] as const
  ) {
    for (const flag of ["--help", "-h"]) {
      const help = await run([flag]);
      assert.equal(help.code, 0, `${program} ${flag}: ${help.stderr}`);
      assert.match(new TextDecoder().decode(help.stdout), /^Usage: /, `${program} ${flag}`);
    }
    for (const flag of ["--version", "-V"]) {
      const version = await run([flag]);
      assert.equal(version.code, 0, `${program} ${flag}: ${version.stderr}`);
      assert.match(
        new TextDecoder().decode(version.stdout),
        new RegExp(`^${name} \\d+\\.\\d+\\.\\d+\\n$`),
        `${program} ${flag}`,
      );
    }
  }
});

// ------------------------------------------------------------------ running from another folder

Deno.test("deno task client resolves LOCAL against the folder it is run from, not the repository", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const here = `${work.path}/sub`;
  await Deno.mkdir(here);
  await Deno.writeTextFile(`${here}/sub.txt`, "from the user's folder\n");
  // As a user's shell would run it; INIT_CWD is deno task's to set (an outer task may have).
  const env = Deno.env.toObject();
  delete env.INIT_CWD;
  const task = (args: string[]): Promise<RunResult> => {
    const config = ["--config", `${REPO_ROOT}deno.json`];
    const client = ["client", server.host, String(server.port), ...args];
    return runCommand(Deno.execPath(), ["task", ...config, ...client], {
      cwd: here,
      clearEnv: true,
      env: { ...env, NO_COLOR: "1" },
    });
  };

  const put = await task(["put", "sub.txt"]);
  assert.equal(put.code, 0, `put from a subfolder: ${put.stderr}`);
  assert.equal(await Deno.readTextFile(`${server.root}/sub.txt`), "from the user's folder\n");
  // README.md exists in the repository; the download must land here all the same.
  assertSuccess(
    await ferry(server, ["put", "-", "README.md"], { stdin: "remote readme\n" }),
    "put",
  );
  const get = await task(["get", "README.md"]);
  assert.equal(get.code, 0, `get into a subfolder: ${get.stderr}`);
  assert.equal(await Deno.readTextFile(`${here}/README.md`), "remote readme\n");
  assert.deepEqual(await listDir(here), ["README.md", "sub.txt"]);
});
