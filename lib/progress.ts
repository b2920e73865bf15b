/**
 * The live progress line on stderr: percentage and bar (when the size is known), bytes, rate and
 * ETA, redrawn in place at most ten times a second and cleared when the transfer ends. Shown only
 * on a terminal unless forced; colour only when NO_COLOR is unset.
 *
 * @module
 */

import { formatBytes, formatRate } from "./format.ts";

/** Options for {@link ProgressLine}. */
export interface ProgressOptions {
  /** Total bytes, when known. */
  total: number | null;
  /** Bytes already in place before this transfer (a resume), counted as done. */
  start?: number;
  /** Draw at all. */
  enabled: boolean;
  /** Use colour (default: when NO_COLOR is not set). */
  color?: boolean;
}

const encoder = new TextEncoder();

/** Whether progress should be shown by default: stderr is a terminal. */
export function progressWanted(): boolean {
  return Deno.stderr.isTerminal();
}

/** Whether colour is allowed (https://no-color.org). */
export function colorAllowed(): boolean {
  // Deno.noColor reflects NO_COLOR without needing permission to read the environment.
  return !Deno.noColor;
}

/** One live progress line. */
export class ProgressLine {
  #label: string;
  #options: ProgressOptions;
  #started = performance.now();
  #lastDraw = 0;
  #bytes = 0;
  #drawn = false;

  /** Creates a line for a transfer named `label`. */
  constructor(label: string, options: ProgressOptions) {
    this.#label = label;
    this.#options = options;
    this.#bytes = options.start ?? 0;
  }

  /** Records the running byte count (including any resumed start) and redraws if due. */
  update(bytes: number): void {
    this.#bytes = bytes;
    if (!this.#options.enabled) return;
    const now = performance.now();
    if (now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    this.#draw(now);
  }

  /** Clears the line. */
  done(): void {
    if (this.#drawn) write("\r\x1b[2K");
    this.#drawn = false;
  }

  /** The line as it would be drawn now, without control codes; for tests and logs. */
  render(now: number = performance.now()): string {
    const { total } = this.#options;
    const moved = this.#bytes - (this.#options.start ?? 0);
    const seconds = Math.max((now - this.#started) / 1000, 0.001);
    const rate = moved / seconds;
    const parts = [this.#label];
    if (total !== null && total > 0) {
      const fraction = Math.min(1, this.#bytes / total);
      parts.push(`${(fraction * 100).toFixed(0).padStart(3)}%`);
      parts.push(`${formatBytes(this.#bytes)} / ${formatBytes(total)}`);
      parts.push(formatRate(moved, seconds));
      const eta = rate > 0 ? (total - this.#bytes) / rate : Infinity;
      parts.push(`ETA ${formatEta(eta)}`);
    } else {
      parts.push(formatBytes(this.#bytes));
      parts.push(formatRate(moved, seconds));
    }
    return parts.join("  ");
  }

  #draw(now: number): void {
    let text = this.render(now);
    const columns = terminalColumns();
    if (text.length > columns - 1) text = text.slice(0, columns - 1);
    const color = this.#options.color ?? colorAllowed();
    if (color) text = text.replace(/(\s+\d+%)/, "\x1b[1m$1\x1b[22m");
    write(`\r\x1b[2K${text}`);
    this.#drawn = true;
  }
}

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.ceil(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 80;
  }
}

function write(text: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(text));
  } catch {
    // stderr closed: progress is not worth failing a transfer for.
  }
}
