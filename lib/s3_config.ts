/**
 * How the server finds an S3 store: the `s3://BUCKET[/PREFIX]` location, the endpoint and region,
 * and the credentials, which come from the environment (`AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or a credentials file (`AWS_SHARED_CREDENTIALS_FILE`,
 * else `~/.aws/credentials`, profile `AWS_PROFILE` or `default`), never from the command line.
 *
 * @module
 */

import { join } from "node:path";
import { UsageError, UserError } from "./errors.ts";

/** A bucket and the key prefix under which the served files live. */
export interface S3Location {
  /** Bucket name. */
  bucket: string;
  /** Key prefix, empty or ending in `/`. */
  prefix: string;
}

/** Keys that sign requests. */
export interface S3Credentials {
  /** Access key id. */
  accessKeyId: string;
  /** Secret access key. */
  secretAccessKey: string;
  /** Session token of temporary credentials, if any. */
  sessionToken?: string;
}

/**
 * Parses `s3://BUCKET[/PREFIX]`; throws {@link UsageError} on anything else.
 *
 * @example
 * ```ts
 * import { parseS3Url } from "./s3_config.ts";
 * parseS3Url("s3://photos/2026"); // { bucket: "photos", prefix: "2026/" }
 * ```
 */
export function parseS3Url(text: string): S3Location {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(text);
  if (!match) {
    throw new UsageError(`Invalid --store ${JSON.stringify(text)}: use s3://BUCKET[/PREFIX]`);
  }
  const bucket = match[1];
  // S3's rules for bucket names: what a path-style URL can carry without escaping.
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new UsageError(`Invalid bucket name ${JSON.stringify(bucket)} in --store`);
  }
  const segments = (match[2] ?? "").split("/").filter((segment) => segment !== "");
  if (segments.some((segment) => segment === "." || segment === "..")) {
    throw new UsageError(`Invalid prefix in --store ${JSON.stringify(text)}: no "." or ".."`);
  }
  return { bucket, prefix: segments.map((segment) => segment + "/").join("") };
}

/**
 * Parses an endpoint URL (`http://127.0.0.1:7480`, `https://s3.example.com`); throws
 * {@link UsageError} on anything else.
 */
export function parseEndpoint(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(
      `Invalid --s3-endpoint ${JSON.stringify(text)}: use http(s)://HOST[:PORT]`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`Invalid --s3-endpoint ${JSON.stringify(text)}: use http or https`);
  }
  if (url.username || url.password) {
    throw new UsageError("--s3-endpoint must not carry credentials: use AWS_ACCESS_KEY_ID");
  }
  return url.origin + url.pathname.replace(/\/+$/, "");
}

/** Environment variables {@link loadCredentials} reads: what a launcher must let the server see. */
export const CREDENTIAL_ENV: readonly string[] = [
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_PROFILE",
  "HOME",
  "USERPROFILE",
];

/**
 * The credentials file {@link loadCredentials} reads when the environment has no keys:
 * `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`; undefined without a home.
 */
export function credentialsFilePath(
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string | undefined {
  const home = env("HOME") ?? env("USERPROFILE");
  return env("AWS_SHARED_CREDENTIALS_FILE") ??
    (home ? join(home, ".aws", "credentials") : undefined);
}

/** Where {@link loadCredentials} looks. */
export interface CredentialSources {
  /** Reads an environment variable (default `Deno.env.get`). */
  env?: (name: string) => string | undefined;
  /** Reads a file's text, or null if it does not exist (default: `Deno.readTextFile`). */
  readFile?: (path: string) => Promise<string | null>;
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** The `[profile]` section of an AWS credentials file, as key/value pairs. */
export function parseCredentialsFile(text: string, profile: string): Record<string, string> | null {
  let current: string | null = null;
  const found: Record<string, string> = {};
  let seen = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (section) {
      current = section[1];
      if (current === profile) seen = true;
      continue;
    }
    const pair = /^([^=]+?)\s*=\s*(.*)$/.exec(line);
    if (pair && current === profile) found[pair[1].toLowerCase()] = pair[2];
  }
  return seen ? found : null;
}

/**
 * Finds the credentials: the environment's pair if set, else the credentials file's profile.
 * Throws {@link UserError} saying where it looked when neither has them.
 */
export async function loadCredentials(sources: CredentialSources = {}): Promise<S3Credentials> {
  const env = sources.env ?? ((name: string) => Deno.env.get(name));
  const readFile = sources.readFile ?? readIfExists;
  const id = env("AWS_ACCESS_KEY_ID");
  const secret = env("AWS_SECRET_ACCESS_KEY");
  if (id && secret) {
    const sessionToken = env("AWS_SESSION_TOKEN") || undefined;
    return { accessKeyId: id, secretAccessKey: secret, sessionToken };
  }
  if (id || secret) {
    throw new UserError(
      `${id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID"} is not set, but ` +
        `${id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY"} is: set both, or neither to use ` +
        "a credentials file",
    );
  }
  const path = credentialsFilePath(env);
  const profile = env("AWS_PROFILE") || "default";
  const text = path ? await readFile(path) : null;
  const section = text === null ? null : parseCredentialsFile(text, profile);
  if (!section) {
    throw new UserError(
      "No S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put profile " +
        `[${profile}] in ${path ?? "~/.aws/credentials"}`,
    );
  }
  const accessKeyId = section["aws_access_key_id"];
  const secretAccessKey = section["aws_secret_access_key"];
  if (!accessKeyId || !secretAccessKey) {
    throw new UserError(
      `Profile [${profile}] in ${path} lacks aws_access_key_id or aws_secret_access_key`,
    );
  }
  return { accessKeyId, secretAccessKey, sessionToken: section["aws_session_token"] || undefined };
}
