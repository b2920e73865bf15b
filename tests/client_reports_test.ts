/**
 * Integration tests of what the client prints about transfers: one `--json` report per file for
 * put, get, mput and mget, and nothing at all with `--quiet`.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertSuccess,
  ferry,
  filesEqual,
  makeTempDir,
  randomBytes,
  startServer,
  stderrLines,
} from "./harness.ts";
import { assertReport, fileSize, jsonLines, onlyReport } from "./client_checks.ts";

const MiB = 1 << 20;

const decoder = new TextDecoder();

// ----------------------------------------------------------------------------- --json, --quiet

Deno.test("--json: one report per file for put, get, mput and mget", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const files = ["a.bin", "b.bin", "c.bin"];
  await Deno.mkdir(`${work.path}/down`);
  for (const [i, name] of files.entries()) {
    await Deno.writeFile(`${work.path}/${name}`, randomBytes(100000 * (i + 1) + i));
  }
  const sizeOf = (name: string) => fileSize(`${work.path}/${name}`);

  const put = await ferry(server, ["put", "a.bin", "--json"], { cwd: work.path });
  assertSuccess(put, "put --json");
  await assertReport(onlyReport(put, "put"), {
    op: "put",
    name: "a.bin",
    size: await sizeOf("a.bin"),
    resumedFrom: 0,
    file: `${work.path}/a.bin`,
  }, "put report");
  assert.match(put.stderr, /Uploaded/, "the human report still goes to stderr");

  const get = await ferry(server, ["get", "a.bin", "--json"], { cwd: `${work.path}/down` });
  assertSuccess(get, "get --json");
  await assertReport(onlyReport(get, "get"), {
    op: "get",
    name: "a.bin",
    size: await sizeOf("a.bin"),
    resumedFrom: 0,
    file: `${work.path}/a.bin`,
  }, "get report");
  assert.equal(onlyReport(get, "get").checksum, onlyReport(put, "put").checksum);

  const mput = await ferry(server, ["mput", "b.bin", "c.bin", "--json"], { cwd: work.path });
  assertSuccess(mput, "mput --json");
  const mputReports = jsonLines(decoder.decode(mput.stdout), "mput");
  assert.equal(mputReports.length, 2);
  for (const [i, name] of ["b.bin", "c.bin"].entries()) {
    await assertReport(mputReports[i], {
      op: "put",
      name,
      size: await sizeOf(name),
      resumedFrom: 0,
      file: `${work.path}/${name}`,
    }, `mput report ${name}`);
  }

  const mget = await ferry(server, ["mget", "b.bin", "c.bin", "--json"], {
    cwd: `${work.path}/down`,
  });
  assertSuccess(mget, "mget --json");
  const mgetReports = jsonLines(decoder.decode(mget.stdout), "mget");
  assert.equal(mgetReports.length, 2);
  for (const [i, name] of ["b.bin", "c.bin"].entries()) {
    await assertReport(mgetReports[i], {
      op: "get",
      name,
      size: await sizeOf(name),
      resumedFrom: 0,
      file: `${work.path}/down/${name}`,
    }, `mget report ${name}`);
  }
  for (const name of files) {
    assert.ok(await filesEqual(`${work.path}/${name}`, `${work.path}/down/${name}`), name);
  }

  // get to stdout: stdout is exactly the file, and the report moves to stderr.
  const data = await Deno.readFile(`${work.path}/c.bin`);
  const piped = await ferry(server, ["get", "c.bin", "-", "--json"]);
  assertSuccess(piped, "get c.bin - --json");
  assert.equal(piped.stdout.length, data.length, "stdout holds only the file's bytes");
  assert.deepEqual(piped.stdout, data);
  const onStderr = stderrLines(piped).filter((line) => line.startsWith("{"));
  assert.equal(onStderr.length, 1, `one JSON report on stderr:\n${piped.stderr}`);
  await assertReport(JSON.parse(onStderr[0]), {
    op: "get",
    name: "c.bin",
    size: data.length,
    resumedFrom: 0,
    file: `${work.path}/c.bin`,
  }, "get - report");
});

Deno.test("--quiet: a successful put or get prints nothing at all", async () => {
  await using server = await startServer();
  await using work = await makeTempDir();
  const data = randomBytes(MiB + 1);
  await Deno.writeFile(`${work.path}/q.bin`, data);

  const put = await ferry(server, ["put", "q.bin", "--quiet"], { cwd: work.path });
  assertSuccess(put, "put --quiet");
  assert.equal(put.stderr, "", "nothing on stderr");
  assert.equal(put.stdout.length, 0, "nothing on stdout");
  assert.deepEqual(await Deno.readFile(`${server.root}/q.bin`), data);

  const get = await ferry(server, ["get", "q.bin", "back.bin", "-q"], { cwd: work.path });
  assertSuccess(get, "get -q");
  assert.equal(get.stderr, "", "nothing on stderr");
  assert.equal(get.stdout.length, 0, "nothing on stdout");
  assert.deepEqual(await Deno.readFile(`${work.path}/back.bin`), data);

  // Errors still get through.
  const refused = await ferry(server, ["put", "q.bin", "--quiet"], { cwd: work.path });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /exists/i, "--quiet keeps errors");
});
