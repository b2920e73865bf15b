/**
 * The server's S3 options (`--store s3://BUCKET[/PREFIX]`, `--s3-endpoint`, `--s3-region`,
 * `--s3-timeout`, `--s3-clean-after`): declared here for the server's option table
 * (lib/server_args.ts), checked together, and turned into an open {@link S3Store}, so that
 * lib/server_cli.ts only passes them through.
 *
 * @module
 */

import { UsageError } from "./errors.ts";
import { formatDuration } from "./format.ts";
import type { KeptOptions } from "./kept_uploads.ts";
import { loadCredentials, parseEndpoint, parseS3Url, type S3Location } from "./s3_config.ts";
import { S3_DEFAULTS, S3Store } from "./s3_store.ts";
import type { OptionTable, OptionValues } from "./options.ts";

/** The heading the usage text lists the options under. */
const S3_SECTION = "Serving an S3 bucket instead of a folder (several servers can serve one " +
  "bucket;\ncredentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile\n" +
  "AWS_PROFILE of ~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE)";

/** The options, declared for the server's option table (lib/server_args.ts). */
export const S3_OPTIONS = {
  store: {
    kind: "string",
    arg: "s3://BUCKET[/PREFIX]",
    section: S3_SECTION,
    help: "serve the objects under PREFIX in BUCKET",
  },
  "s3-endpoint": {
    kind: "string",
    needs: "store",
    arg: "URL",
    section: S3_SECTION,
    help: "the store's address, http(s)://HOST[:PORT] (required)",
  },
  "s3-region": {
    kind: "string",
    needs: "store",
    arg: "NAME",
    default: "us-east-1",
    section: S3_SECTION,
    help: "region requests are signed for (default us-east-1)",
  },
  "s3-timeout": {
    kind: "seconds",
    needs: "store",
    arg: "SECS",
    key: "s3TimeoutMs",
    default: S3_DEFAULTS.timeoutMs,
    section: S3_SECTION,
    help: `give up on a store request after this long (default ${S3_DEFAULTS.timeoutMs / 1000})`,
  },
  "s3-clean-after": {
    kind: "duration",
    needs: "store",
    arg: "DURATION",
    key: "s3CleanAfterMs",
    min: 1000,
    default: S3_DEFAULTS.cleanAfterMs,
    hint: "use 90s, 30m, 1h, at least 1 s",
    section: S3_SECTION,
    help: "remove uploads staged by a server that stopped after this long untouched (default " +
      `${formatDuration(S3_DEFAULTS.cleanAfterMs)})`,
  },
} as const satisfies OptionTable;

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
 * Checks the parsed S3 options together; undefined without `--store`. Throws
 * {@link UsageError} for a bad value.
 */
export function parseS3Options(
  values: OptionValues<typeof S3_OPTIONS>,
): S3Command | undefined {
  const { store, s3Endpoint: endpoint, s3Region: region } = values;
  // An S3 option without --store was refused by the declaration's `needs`.
  if (store === undefined) return undefined;
  const location = parseS3Url(store);
  if (endpoint === undefined) throw new UsageError("--store needs --s3-endpoint URL");
  if (!/^[a-z0-9-]+$/.test(region)) {
    throw new UsageError(`Invalid --s3-region ${JSON.stringify(region)}`);
  }
  return {
    ...location,
    endpoint: parseEndpoint(endpoint),
    region,
    timeoutMs: values.s3TimeoutMs,
    cleanAfterMs: values.s3CleanAfterMs,
  };
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
