/** The S3 store's configuration: `--store` locations, endpoints and where credentials come from. */

import assert from "node:assert/strict";
import { UsageError, UserError } from "../lib/errors.ts";
import { loadCredentials, parseEndpoint, parseS3Url } from "../lib/s3_config.ts";
import { parseServerArgs } from "../lib/server_args.ts";

Deno.test("s3 config: s3:// locations", () => {
  assert.deepEqual(parseS3Url("s3://photos"), { bucket: "photos", prefix: "" });
  assert.deepEqual(parseS3Url("s3://photos/2026//june/"), {
    bucket: "photos",
    prefix: "2026/june/",
  });
  for (const bad of ["photos", "s3://", "s3://Ph", "s3://a/../b", "http://x/y"]) {
    assert.throws(() => parseS3Url(bad), UsageError, bad);
  }
});

Deno.test("s3 config: endpoints", () => {
  assert.equal(parseEndpoint("http://127.0.0.1:7480/"), "http://127.0.0.1:7480");
  assert.throws(() => parseEndpoint("ftp://x"), UsageError);
  assert.throws(() => parseEndpoint("http://key:secret@x"), /must not carry credentials/);
});

Deno.test("s3 config: the server's options", () => {
  const cmd = parseServerArgs([
    "--store",
    "s3://bkt/p",
    "--s3-endpoint",
    "http://127.0.0.1:1",
    "--s3-timeout",
    "2.5",
  ]);
  assert.equal(cmd.s3?.bucket, "bkt");
  assert.equal(cmd.s3?.timeoutMs, 2500);
  assert.equal(cmd.s3?.region, "us-east-1");
  assert.throws(() => parseServerArgs(["--store", "s3://bkt"]), /needs --s3-endpoint/);
  assert.throws(() => parseServerArgs(["--s3-endpoint", "http://x"]), /needs --store/);
  assert.throws(
    () => parseServerArgs(["--store", "s3://bkt", "--s3-endpoint", "http://x", "--root", "r"]),
    /cannot be combined/,
  );
  // The HTTP side reads kept uploads and folders from the folder store only, so far.
  assert.throws(
    () => parseServerArgs(["--store", "s3://bkt", "--s3-endpoint", "http://x", "--http", "8080"]),
    /--http serves a folder only/,
  );
});

Deno.test("s3 config: credentials from the environment, else the credentials file", async () => {
  const files: Record<string, string> = {
    "/home/u/.aws/credentials": "[default]\naws_access_key_id = A\naws_secret_access_key = S\n" +
      "[other]\naws_access_key_id=B\naws_secret_access_key=T\naws_session_token=Z\n",
  };
  const readFile = (path: string) => Promise.resolve(files[path] ?? null);
  const from = (env: Record<string, string>) =>
    loadCredentials({ env: (name) => env[name], readFile });
  assert.deepEqual(
    await from({ AWS_ACCESS_KEY_ID: "E", AWS_SECRET_ACCESS_KEY: "F", HOME: "/home/u" }),
    {
      accessKeyId: "E",
      secretAccessKey: "F",
      sessionToken: undefined,
    },
  );
  assert.deepEqual(await from({ HOME: "/home/u" }), {
    accessKeyId: "A",
    secretAccessKey: "S",
    sessionToken: undefined,
  });
  assert.deepEqual(await from({ HOME: "/home/u", AWS_PROFILE: "other" }), {
    accessKeyId: "B",
    secretAccessKey: "T",
    sessionToken: "Z",
  });
  await assert.rejects(() => from({ HOME: "/nowhere" }), UserError);
  await assert.rejects(() => from({ HOME: "/home/u", AWS_ACCESS_KEY_ID: "E" }), /both, or neither/);
  await assert.rejects(
    () => from({ AWS_SHARED_CREDENTIALS_FILE: "/home/u/.aws/credentials", AWS_PROFILE: "x" }),
    /\[x\]/,
  );
});
