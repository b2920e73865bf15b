/**
 * The server's S3 options (`--store s3://BUCKET[/PREFIX]`, `--s3-endpoint`, `--s3-region`,
 * `--s3-timeout`, `--s3-clean-after`): parsed here, and turned into an open {@link S3Store},
 * so that lib/server_cli.ts only passes them through.
 *
 * @module
 */

import type { OptionSpec } from "./cli.ts";
import { UsageError } from "./errors.ts";
import { parseDuration } from "./format.ts";
import type { KeptOptions } from "./kept_uploads.ts";
import { loadCredentials, parseEndpoint, parseS3Url, type S3Location } from "./s3_config.ts";
import { S3_DEFAULTS, S3Store } from "./s3_store.ts";

/** The options, for the server's option table. */
export const S3_OPTIONS: OptionSpec = {
  store: { type: "string" },
  "s3-endpoint": { type: "string" },
  "s3-region": { type: "string" },
  "s3-timeout": { type: "string" },
  "s3-clean-after": { type: "string" },
};

/** A parsed `--store s3://...` and its companions. */
export interface S3Command extends S3Location {
  /** The store's base URL. */
  endpoint: string;
  /** Signing region. */
  region: string;
  /** Per-request timeout, milliseconds. */
  timeoutMs: number;
  /** Age after which a dead server's staged uploads are removed, milliseconds. */
  cleanAfterMs: number;
}

/**
 * Parses the S3 options; undefined without `--store`. Throws {@link UsageError} for a bad value or
 * an S3 option without `--store`.
 */
export function parseS3Options(
  values: Record<string, string | boolean | undefined>,
): S3Command | undefined {
  const text = (name: string) => values[name] as string | undefined;
  const store = text("store");
  if (store === undefined) {
    const stray = Object.keys(S3_OPTIONS).find((name) => values[name] !== undefined);
    if (stray) throw new UsageError(`--${stray} needs --store s3://BUCKET`);
    return undefined;
  }
  const location = parseS3Url(store);
  const endpoint = text("s3-endpoint");
  if (endpoint === undefined) throw new UsageError("--store needs --s3-endpoint URL");
  const region = text("s3-region") ?? "us-east-1";
  if (!/^[a-z0-9-]+$/.test(region)) {
    throw new UsageError(`Invalid --s3-region ${JSON.stringify(region)}`);
  }
  let timeoutMs: number = S3_DEFAULTS.timeoutMs;
  const timeout = text("s3-timeout");
  if (timeout !== undefined) {
    const seconds = Number(timeout);
    if (!/^\d+(\.\d+)?$/.test(timeout) || seconds <= 0) {
      throw new UsageError(`Invalid --s3-timeout ${JSON.stringify(timeout)}: use seconds, over 0`);
    }
    timeoutMs = seconds * 1000;
  }
  let cleanAfterMs: number = S3_DEFAULTS.cleanAfterMs;
  const clean = text("s3-clean-after");
  if (clean !== undefined) {
    const parsed = parseDuration(clean);
    if (parsed === null || parsed < 1000) {
      throw new UsageError(
        `Invalid --s3-clean-after ${JSON.stringify(clean)}: use 90s, 30m, 1h, at least 1 s`,
      );
    }
    cleanAfterMs = parsed;
  }
  return { ...location, endpoint: parseEndpoint(endpoint), region, timeoutMs, cleanAfterMs };
}

/**
 * Opens the bucket with the credentials from the environment or the credentials file, keeping
 * interrupted uploads within `kept`.
 */
export async function openS3Store(
  cmd: S3Command,
  kept: KeptOptions,
  log: (line: string) => void,
): Promise<S3Store> {
  const credentials = await loadCredentials();
  return await S3Store.open({
    ...cmd,
    credentials,
    kept,
    log: (line) => log(`ferry-server: ${line}`),
  });
}
