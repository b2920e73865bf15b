/**
 * The object store `scripts/ceph.sh up` runs, as the S3 bench (scripts/bench_s3.ts) and the S3
 * tests (tests/s3_harness.ts) find it: the endpoint and keys from the env file the script writes,
 * given only when the store answers.
 *
 * @module
 */

/** The env file scripts/ceph.sh writes: `$FERRY_S3_ENV`, else `$TMPDIR/ferry-ceph/s3.env`. */
export const S3_ENV_FILE = Deno.env.get("FERRY_S3_ENV") ??
  `${Deno.env.get("TMPDIR") ?? "/tmp"}/ferry-ceph/s3.env`;

/** Where the store answers and the keys it takes. */
export interface S3Store {
  /** The radosgw's URL, e.g. `http://127.0.0.1:7480`. */
  endpoint: string;
  /** Access key id. */
  key: string;
  /** Secret access key. */
  secret: string;
}

/**
 * The store named in `file` (default {@link S3_ENV_FILE}), or null when the file is missing or
 * the store does not answer within 3 s.
 *
 * @example
 * ```ts
 * const store = await findS3Store();
 * if (store === null) console.error("no object store: scripts/ceph.sh up");
 * ```
 */
export async function findS3Store(file: string = S3_ENV_FILE): Promise<S3Store | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch {
    return null;
  }
  const env = Object.fromEntries(
    text.trim().split("\n").map((line) => line.split("=", 2) as [string, string]),
  );
  try {
    const response = await fetch(env.FERRY_S3_ENDPOINT + "/", {
      signal: AbortSignal.timeout(3000),
    });
    await response.body?.cancel();
  } catch {
    return null;
  }
  return {
    endpoint: env.FERRY_S3_ENDPOINT,
    key: env.AWS_ACCESS_KEY_ID,
    secret: env.AWS_SECRET_ACCESS_KEY,
  };
}
