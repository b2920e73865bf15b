/**
 * The live progress line on stderr: percentage (when the size is known), bytes, rate and ETA,
 * redrawn in place at most ten times a second, fitted to the terminal's width, and cleared when
 * the transfer ends. Shown only on a terminal unless forced; colour only on a terminal and
 * when NO_COLOR is unset.
 *
 * @module
 */

import { escapeUnsafe, formatBytes, formatRate } from "./format.ts";

/** Options for {@link ProgressLine}. */
export interface ProgressOptions {
  /** Total bytes, when known. */
  total: number | null;
  /** Bytes already in place before this transfer (a resume), counted as done. */
  start?: number;
  /** Draw at all. */
  enabled: boolean;
  /** Use colour (default: {@link colorAllowed}). */
  color?: boolean;
}

const encoder = new TextEncoder();

/** Whether progress should be shown by default: stderr is a terminal. */
export function progressWanted(): boolean {
  return Deno.stderr.isTerminal();
}

/**
 * Whether colour is allowed: stderr is a terminal (escape sequences in a log file are noise, even
 * with `--progress`) and NO_COLOR is unset (https://no-color.org).
 */
export function colorAllowed(): boolean {
  // Deno.noColor reflects NO_COLOR without needing permission to read the environment.
  return !Deno.noColor && Deno.stderr.isTerminal();
}

/** Options for {@link ProgressLine.render}. */
export interface RenderOptions {
  /**
   * Terminal width to fit the line into (it takes one column less, so the cursor never wraps);
   * 0 means unknown, as some terminals report, and counts as 80. No fitting when absent.
   */
  columns?: number;
}

/** Width assumed when the terminal does not say. */
const DEFAULT_COLUMNS = 80;

/** The label is shortened down to this many columns before any number is left out. */
const MIN_LABEL = 8;

/** Between the fields of the line. */
const GAP = "  ";

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
    this.#label = escapeUnsafe(label);
    this.#options = options;
    this.#bytes = options.start ?? 0;
  }

  /**
   * Changes the label and the total while the transfer runs: a tree transfer learns how many
   * files and bytes it will move as its manifest is answered, and counts the files done.
   */
  retitle(label: string, total: number | null): void {
    this.#label = escapeUnsafe(label);
    this.#options = { ...this.#options, total };
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
  render(now: number = performance.now(), options: RenderOptions = {}): string {
    return this.#fields(now, options.columns).map((field) => field.text).join(GAP);
  }

  /**
   * The fields of the line: the label, then the numbers. To fit `columns`, the label is
   * shortened first (the numbers are what the line is for); only when even a short label leaves
   * no room are the least useful numbers left out, bytes first, then the rate.
   */
  #fields(now: number, columns: number | undefined): Field[] {
    const { total } = this.#options;
    const moved = this.#bytes - (this.#options.start ?? 0);
    const seconds = Math.max((now - this.#started) / 1000, 0.001);
    const rate = formatRate(moved, seconds);
    const label: Field = { text: this.#label };
    let choices: Field[][];
    if (total !== null && total > 0) {
      const fraction = Math.min(1, this.#bytes / total);
      const percent = { text: `${(fraction * 100).toFixed(0).padStart(3)}%`, percent: true };
      const bytes = { text: `${formatBytes(this.#bytes)} / ${formatBytes(total)}` };
      const speed = moved / seconds;
      const eta = {
        text: `ETA ${formatEta(speed > 0 ? (total - this.#bytes) / speed : Infinity)}`,
      };
      choices = [
        [percent, bytes, { text: rate }, eta],
        [percent, { text: rate }, eta],
        [percent, eta],
        [percent],
      ];
    } else {
      const bytes = { text: formatBytes(this.#bytes) };
      choices = [[bytes, { text: rate }], [bytes]];
    }
    if (columns === undefined) return [label, ...choices[0]];
    const width = (columns > 0 ? columns : DEFAULT_COLUMNS) - 1;
    const labelWidth = displayWidth(label.text);
    for (const numbers of choices) {
      const room = width - numbers.reduce((n, f) => n + GAP.length + displayWidth(f.text), 0);
      if (room >= Math.min(labelWidth, MIN_LABEL)) {
        return [{ text: shorten(label.text, room) }, ...numbers];
      }
    }
    // Narrower than any sensible line: the most important number alone, cut to fit.
    const last = choices.at(-1)![0];
    return [{ ...last, text: shorten(last.text, width) }];
  }

  #draw(now: number): void {
    const fields = this.#fields(now, terminalColumns());
    const color = this.#options.color ?? colorAllowed();
    const text = fields.map((f) => color && f.percent ? `\x1b[1m${f.text}\x1b[22m` : f.text)
      .join(GAP);
    write(`\r\x1b[2K${text}`);
    this.#drawn = true;
  }
}

/** One field of the progress line; the percentage is the one drawn in bold. */
interface Field {
  text: string;
  percent?: boolean;
}

/** Combining marks and zero-width characters, which take no column. */
const ZERO_WIDTH = /^[\p{Mn}\p{Me}\u200b-\u200f\u2060\ufeff]$/u;

/** Wide (East Asian and emoji) characters, which take two columns. */
const WIDE =
  /^[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1f64f}\u{1f900}-\u{1f9ff}\u{20000}-\u{3fffd}]$/u;

/** Columns `char` (one code point) takes on a terminal. */
function charWidth(char: string): number {
  return ZERO_WIDTH.test(char) ? 0 : WIDE.test(char) ? 2 : 1;
}

/** Columns `text` takes on a terminal. */
export function displayWidth(text: string): number {
  let width = 0;
  for (const char of text) width += charWidth(char);
  return width;
}

/**
 * `text` cut to at most `width` columns with an ellipsis in the middle, keeping the start and
 * the end (where a file name's extension is).
 */
export function shorten(text: string, width: number): string {
  if (displayWidth(text) <= width) return text;
  if (width <= 1) return "…".slice(0, Math.max(width, 0));
  const chars = Array.from(text);
  let tailRoom = Math.floor((width - 1) / 3);
  let headRoom = width - 1 - tailRoom;
  let head = "";
  for (const char of chars) {
    headRoom -= charWidth(char);
    if (headRoom < 0) break;
    head += char;
  }
  let tail = "";
  for (let i = chars.length - 1; i >= 0; i--) {
    tailRoom -= charWidth(chars[i]);
    if (tailRoom < 0) break;
    tail = chars[i] + tail;
  }
  return `${head}…${tail}`;
}

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.ceil(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

/** The terminal's width as it reports it (0 when it does not know), or 0 without a terminal. */
function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 0;
  }
}

function write(text: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(text));
  } catch {
    // stderr closed: progress is not worth failing a transfer for.
  }
}
