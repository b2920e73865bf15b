/**
 * What the client prints: the line and JSON report for each finished transfer, the progress
 * line wiring, and the `kept` output (a table, or JSON); `list`'s is lib/tree_cli.ts's. Data and
 * JSON reports go to stdout, unless a get's data is there; messages and progress to stderr.
 *
 * @module
 */

import type { ClientSession, FlowOptions } from "./client_session.ts";
import type { ClientCommand } from "./client_args.ts";
import { say } from "./cli.ts";
import { downloadsToStdout } from "./local_download.ts";
import {
  displayName,
  formatBytes,
  formatDate,
  formatRate,
  formatSeconds,
  safeJson,
} from "./format.ts";
import { cannotWriteStdout } from "./local_files.ts";
import { ProgressLine, progressWanted } from "./progress.ts";
import type { KeptEntry } from "./protocol.ts";
import type { RateLimiter } from "./rate_limit.ts";
import type { TransferResult } from "./transfer.ts";
import { writeAll } from "./write_all.ts";

/** What a report names of a transfer: which way, the remote name and the local path. */
export interface Transfer {
  op: "put" | "get";
  /** Local path, or "-" for stdin/stdout. */
  local: string;
  /** Remote name. */
  remote: string;
}

/** What a finished transfer reports. */
export interface Report {
  result: TransferResult & { resumedFrom: number };
  /** Where the bytes went or came from, for the message. */
  where: string;
  verified: boolean;
}

/** Reports a finished transfer: a JSON report with --json, and a line on stderr unless --quiet. */
export async function announce(
  cmd: Pick<ClientCommand, "json" | "quiet">,
  job: Transfer,
  report: Report,
  seconds: number,
): Promise<void> {
  const { result } = report;
  if (cmd.json) {
    await emitJson(job, {
      op: job.op,
      name: job.remote,
      size: result.size,
      transferred: result.size - result.resumedFrom,
      resumedFrom: result.resumedFrom,
      checksum: report.verified ? result.checksum : null,
      seconds: Math.round(seconds * 1000) / 1000,
    });
  }
  if (cmd.quiet) return;
  const moved = result.size - result.resumedFrom;
  const check = report.verified
    ? result.checksum
    : "UNVERIFIED (the seed protocol has no checksum)";
  const resumed = result.resumedFrom > 0
    ? `, resumed after ${formatBytes(result.resumedFrom)}`
    : "";
  const summary = `${formatBytes(result.size)} in ${formatSeconds(seconds)} ` +
    `(${formatRate(moved, seconds)}${resumed}), ${check}`;
  say(
    job.op === "put"
      ? `Uploaded ${report.where} as ${JSON.stringify(job.remote)}: ${summary}`
      : `Downloaded ${JSON.stringify(job.remote)} to ${report.where}: ${summary}`,
  );
}

/** Writes one JSON report line: on stdout, or on stderr when a get's data goes to stdout. */
export async function emitJson(job: Transfer, report: Record<string, unknown>): Promise<void> {
  const line = safeJson(report);
  // stdout belongs to the data when a get writes there.
  if (job.op === "get" && downloadsToStdout(job.local)) {
    say(line);
  } else await writeStdout(line + "\n");
}

/** A transfer's progress line, and the flow options that drive it and pace it by `limiter`. */
export function flowOptions(
  cmd: Pick<ClientCommand, "quiet" | "progress">,
  label: string,
  total: number | null,
  start: number,
  limiter?: RateLimiter,
) {
  const progress = new ProgressLine(label, {
    total,
    start,
    enabled: !cmd.quiet && (cmd.progress || progressWanted()),
  });
  const flow: FlowOptions = {
    onProgress: (bytes) => progress.update(bytes),
    throttle: limiter ? (bytes, signal) => limiter.take(bytes, signal) : undefined,
    maxChunk: limiter?.chunkSize,
  };
  return { flow, progress };
}

/** Prints the interrupted uploads the server keeps: a table, or --json. */
export async function runKept(
  session: ClientSession,
  cmd: Pick<ClientCommand, "json">,
): Promise<void> {
  const entries = await session.kept();
  // Names come from the server: shown escaped, as list shows them.
  if (cmd.json) {
    const time = (ms: number) => new Date(ms).toISOString();
    await writeStdout(
      safeJson(
        entries.map((e) => ({
          name: e.name,
          bytes: e.bytes,
          size: e.size,
          keptAt: time(e.keptAt),
          expiresAt: time(e.expiresAt),
        })),
        2,
      ) + "\n",
    );
    return;
  }
  await writeStdout(formatKept(entries));
}

/** `kept` as text: bytes kept of the whole, until when, and the name; then the totals. */
function formatKept(entries: KeptEntry[]): string {
  const kept = entries.map((e) => formatBytes(e.bytes));
  const sizes = entries.map((e) => e.size === null ? "?" : formatBytes(e.size));
  const keptWidth = Math.max(0, ...kept.map((s) => s.length));
  const sizeWidth = Math.max(0, ...sizes.map((s) => s.length));
  const lines = entries.map((e, i) =>
    `${kept[i].padStart(keptWidth)} of ${sizes[i].padStart(sizeWidth)}  ` +
    `until ${formatDate(e.expiresAt)}  ${displayName(e.name)}\n`
  );
  const total = entries.reduce((n, e) => n + e.bytes, 0);
  const uploads = entries.length === 1 ? "1 kept upload" : `${entries.length} kept uploads`;
  return lines.join("") + `${uploads}, ${formatBytes(total)}\n`;
}

/** Writes all of `text` to stdout; a closed pipe or a full disk is reported as stdout's. */
export async function writeStdout(text: string): Promise<void> {
  try {
    await writeAll(Deno.stdout, new TextEncoder().encode(text));
  } catch (error) {
    throw cannotWriteStdout(error);
  }
}
