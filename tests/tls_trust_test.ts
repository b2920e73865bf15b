/**
 * Integration tests of issue 15's client pins: trust on first use with the fingerprint shown,
 * the two-command recipe whose pasted `--fingerprint` is remembered, `trust` without one,
 * `--fingerprint` by IP address or by name, a mismatched or changed certificate refused loudly
 * with how to trust the new one, and a bad `--fingerprint` as a usage error.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { rememberServer } from "../lib/known_servers.ts";
import { makeSelfSignedCertificate, pemCertificates } from "../lib/x509.ts";
import {
  assertFailure,
  assertOneStderrLine,
  assertSuccess,
  assertUsageError,
  ferry,
  makeTempDir,
  runClient,
  startServer,
  storedFiles,
  type TempDir,
} from "./harness.ts";
import { FINGERPRINT, startTlsServer } from "./tls_setup.ts";

/** A request in the server's log: `TIME PEER put|get|list|... NAME ...`. */
const REQUEST_LOG = /^\d{4}-\d\d-\d\dT\S+ \S+ [a-z]+ (?:"|- )/;

const decoder = new TextDecoder();

/** A client's private config folder: where `trust` and `--fingerprint` remember servers. */
async function clientHome(): Promise<
  TempDir & { options: { env: Record<string, string> } }
> {
  const dir = await makeTempDir({ prefix: "ferry_home_" });
  return Object.assign(dir, {
    options: { env: { XDG_CONFIG_HOME: dir.path } },
  });
}

// -------------------------------------------------------------------------------- the client

Deno.test("first use: --tls to an unknown server fails with its fingerprint; trust, then it connects", async () => {
  await using base = await makeTempDir();
  await using home = await clientHome();
  const { server, fingerprint } = await startTlsServer(join(base.path, "state"));
  await using _ = server;
  const first = await ferry(server, ["--tls", "list"], home.options);
  assertFailure(first, /is not known and no CA vouches for its certificate/, { what: "first use" });
  assert.ok(first.stderr.includes(`its fingerprint is ${fingerprint}`), first.stderr);
  const trust = first.stderr.match(/'ferry (--fingerprint \S+ \S+ \d+ trust)'/);
  assert.ok(trust, `no trust command in: ${first.stderr}`);
  // The command it suggests, pasted as it is.
  const trusted = await runClient(trust[1].split(" "), home.options);
  assertSuccess(trusted, "trust");
  assertOneStderrLine(
    trusted,
    new RegExp(`trusted 127\\.0\\.0\\.1:${server.port} as ${fingerprint.replace(/[+/]/g, "\\$&")}`),
    {
      what: "trust",
    },
  );
  const file = join(home.path, "ferry", "known_servers");
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, "known_servers mode");
  const listed = await ferry(server, ["--tls", "list"], home.options);
  assertSuccess(listed, "--tls after trust");
  assert.equal(listed.stderr, "");
  // Trusted per host and port: another spelling of the same server is not known yet.
  assertFailure(
    await runClient(["localhost", String(server.port), "--tls", "list"], home.options),
    /localhost:\d+ is not known/,
    { what: "other name" },
  );
});

Deno.test("the two-command recipe: the pasted --fingerprint is remembered, later commands need only --tls", async () => {
  await using base = await makeTempDir();
  await using home = await clientHome();
  const { server, fingerprint, command } = await startTlsServer(join(base.path, "state"));
  await using _ = server;
  const pasted = await runClient(command, home.options);
  assertSuccess(pasted, "the server's command");
  assertOneStderrLine(
    pasted,
    /^ferry: remembered 127\.0\.0\.1:\d+ as SHA256:\S+ in .*known_servers$/,
    {
      what: "pasted",
    },
  );
  assert.ok(pasted.stderr.includes(fingerprint), pasted.stderr);
  const later = await ferry(server, ["--tls", "list"], home.options);
  assertSuccess(later, "--tls after the pasted command");
  assert.equal(later.stderr, "", "a remembered server is not announced again");
});

Deno.test("trust without --fingerprint remembers whatever certificate answers, and says which", async () => {
  await using base = await makeTempDir();
  await using home = await clientHome();
  const { server, fingerprint } = await startTlsServer(join(base.path, "state"));
  await using _ = server;
  const trusted = await ferry(server, ["trust"], home.options);
  assertSuccess(trusted, "trust");
  assertOneStderrLine(trusted, /trusted 127\.0\.0\.1:\d+ as SHA256:/, { what: "trust" });
  assert.ok(trusted.stderr.includes(fingerprint), trusted.stderr);
  // Reading the certificate sends no request.
  assert.ok(!server.lines.some((l) => REQUEST_LOG.test(l)), server.lines.join("\n"));
  assertSuccess(await ferry(server, ["--tls", "list"], home.options), "--tls after trust");
});

Deno.test("--fingerprint pins by IP address and by a name the certificate does not carry", async () => {
  await using base = await makeTempDir();
  // A certificate naming only a name no one connects by.
  const made = await makeSelfSignedCertificate({ commonName: "x", names: ["elsewhere.invalid"] });
  await Deno.writeTextFile(join(base.path, "cert.pem"), made.cert);
  await Deno.writeTextFile(join(base.path, "key.pem"), made.key);
  await using server = await startServer({
    args: ["--tls-cert", join(base.path, "cert.pem"), "--tls-key", join(base.path, "key.pem")],
  });
  const fingerprint = (await server.waitForLog(/TLS certificate SHA256:/)).match(FINGERPRINT)![0];
  await Deno.writeTextFile(join(base.path, "up.txt"), "pinned\n");
  for (const host of ["127.0.0.1", "localhost"]) {
    // Nowhere to remember it (the tests' config folder cannot be made): the pin alone must do,
    // every time.
    const put = await runClient([
      host,
      String(server.port),
      "--fingerprint",
      fingerprint,
      "put",
      join(base.path, "up.txt"),
      `${host}.txt`,
    ]);
    assertSuccess(put, `pinned put via ${host}`);
    const got = await runClient([
      host,
      String(server.port),
      "--fingerprint",
      fingerprint,
      "get",
      `${host}.txt`,
      "-",
    ]);
    assertSuccess(got, `pinned get via ${host}`);
    assert.equal(decoder.decode(got.stdout), "pinned\n");
  }
  // Without the pin, neither the system's roots nor the name vouch for it.
  assertFailure(await ferry(server, ["--tls", "list"]), /no CA vouches/, { what: "unpinned" });
});

Deno.test("--fingerprint that does not match is refused with both fingerprints, and nothing is sent", async () => {
  await using base = await makeTempDir();
  await using home = await clientHome();
  const { server, fingerprint } = await startTlsServer(join(base.path, "state"));
  await using _ = server;
  const other = await makeSelfSignedCertificate({ commonName: "other", names: ["localhost"] });
  const wrong = await (await import("../lib/x509.ts")).formatFingerprint(
    pemCertificates(other.cert)[0],
  );
  await Deno.writeTextFile(join(base.path, "up.txt"), "secret\n");
  const put = await ferry(
    server,
    ["--fingerprint", wrong, "put", join(base.path, "up.txt")],
    home.options,
  );
  assertFailure(put, /nothing was sent/, { what: "mismatched pin" });
  assert.ok(put.stderr.includes(fingerprint) && put.stderr.includes(wrong), put.stderr);
  assert.deepEqual(await storedFiles(server.root), []);
  assert.ok(!server.lines.some((l) => REQUEST_LOG.test(l)), server.lines.join("\n"));
  // Nothing was remembered either: the unknown server is still unknown.
  assertFailure(await ferry(server, ["--tls", "list"], home.options), /is not known/, {
    what: "after mismatch",
  });
  // Control: the right pin makes a request, and the log shows it as one.
  assertSuccess(await ferry(server, ["--fingerprint", fingerprint, "list"]), "right pin");
  await server.waitForLog(REQUEST_LOG);
});

Deno.test("a changed certificate is refused loudly, with how to trust the new one", async () => {
  await using base = await makeTempDir();
  await using home = await clientHome();
  const { server, fingerprint } = await startTlsServer(join(base.path, "state"));
  await using _ = server;
  // What the client remembered for this host and port is another certificate: as if the server
  // had been replaced since, or someone stood in between.
  const old = await makeSelfSignedCertificate({ commonName: "old", names: ["localhost"] });
  const known = join(home.path, "ferry", "known_servers");
  await rememberServer(known, server.host, server.port, pemCertificates(old.cert)[0]);
  await Deno.writeTextFile(join(base.path, "up.txt"), "secret\n");
  const put = await ferry(server, ["--tls", "put", join(base.path, "up.txt")], home.options);
  assertFailure(put, /WARNING: THE CERTIFICATE OF 127\.0\.0\.1:\d+ HAS CHANGED/, {
    what: "changed",
  });
  assert.ok(put.stderr.includes(`is now ${fingerprint}`), put.stderr);
  assert.deepEqual(await storedFiles(server.root), []);
  assert.ok(!server.lines.some((l) => REQUEST_LOG.test(l)), server.lines.join("\n"));
  const update = put.stderr.match(/'ferry (--fingerprint \S+ \S+ \d+ trust)'/);
  assert.ok(update, put.stderr);
  assertSuccess(await runClient(update[1].split(" "), home.options), "trust the new one");
  assertSuccess(
    await ferry(server, ["--tls", "put", join(base.path, "up.txt")], home.options),
    "after update",
  );
});

Deno.test("--fingerprint with a bad value is a usage error", async () => {
  for (const bad of ["SHA256:short", "md5:abc", "SHA256:" + "A".repeat(44)]) {
    assertUsageError(await runClient(["127.0.0.1", "9", "--fingerprint", bad, "list"]), "ferry", {
      what: bad,
      pattern: /Invalid --fingerprint/,
    });
  }
});
