/**
 * The HTML a browser sees: a folder's listing (works without JavaScript: names, sizes, dates,
 * folder links and download links; a big folder's page says where it is and links to the others,
 * with a search form), the login form and error pages. Every name and message is escaped here,
 * and only here, through {@link escapeHtml}; the styles are embedded so the page needs nothing
 * from the network.
 *
 * @module
 */

import { formatBytes } from "../format.ts";
import type { FolderPage, PageLink } from "../folder_page.ts";
import {
  BY_NAME,
  formatCursor,
  MAX_QUERY_CHARS,
  type PageCursor,
  type PageSort,
  type SortKey,
  sortParams,
} from "../page_order.ts";
import type { TreeEntry } from "../tree_protocol.ts";
import { NAME, VERSION } from "../version.ts";

/** Escapes text for HTML content and double- or single-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The URL path of a name: each segment percent-encoded, so `#`, `?` and `%` stay in the name. */
export function hrefOf(name: string, folder = false): string {
  const path = name === "" ? "" : name.split("/").map(encodeURIComponent).join("/");
  return "/" + path + (folder && path !== "" ? "/" : "");
}

const STYLE = `
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--mut:#5b6470;--line:#d8dde3;--acc:#0b62c4;--hi:#f2f5f8}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ed;--bg:#15181c;--mut:#9aa4b0;--line:#2c3239;--acc:#6cb0ff;--hi:#1d2227}}
*{box-sizing:border-box}[hidden]{display:none!important}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header,main,footer{max-width:60rem;margin:0 auto;padding:.75rem 1rem}
header{border-bottom:1px solid var(--line)}h1{font-size:1.15rem;margin:.2rem 0;word-break:break-all}
h1 a{color:var(--acc);text-decoration:none}h1 a:hover,h1 a:focus{text-decoration:underline}
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:.45rem .4rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.8rem;color:var(--mut);font-weight:600}td.n{word-break:break-all}td.s,td.d,th.s,th.d{white-space:nowrap}td.s,th.s{text-align:right}
tr:hover td{background:var(--hi)}a{color:var(--acc)}a:focus-visible,button:focus-visible,input:focus-visible{outline:2px solid var(--acc);outline-offset:2px}
.dir::before{content:"";display:inline-block;width:.95em;height:.7em;margin-right:.45em;border:2px solid currentColor;border-radius:2px 2px 3px 3px;border-top-width:4px;vertical-align:-.05em}.mut{color:var(--mut)}footer{font-size:.8rem;color:var(--mut)}
form.login{max-width:22rem;margin:3rem auto;display:grid;gap:.6rem}input,button{font:inherit;padding:.5rem .6rem;border:1px solid var(--line);border-radius:.35rem;background:var(--bg);color:var(--fg)}
button{background:var(--acc);color:#fff;border:0;cursor:pointer}.err{color:#c62828}
.sort{background:none;color:inherit;padding:0;font:inherit;font-weight:600;cursor:pointer;text-decoration:none}a.sort:hover,a.sort:focus{text-decoration:underline}
th[aria-sort=ascending] .sort::after{content:" ▲"}th[aria-sort=descending] .sort::after{content:" ▼"}
#tools{display:flex;gap:.5rem;flex-wrap:wrap;margin:.5rem 0}#tools input{flex:1;min-width:10rem}
#drop{border:2px dashed var(--line);border-radius:.5rem;padding:1rem;text-align:center;margin:.75rem 0}
#drop.over{border-color:var(--acc);background:var(--hi)}#drop label{color:var(--acc);text-decoration:underline;cursor:pointer}
#drop input[type=file]{position:absolute;width:1px;height:1px;opacity:0}
#results{list-style:none;padding:0;margin:.5rem 0}#results li{display:grid;grid-template-columns:1fr 7rem;gap:.1rem .5rem;padding:.3rem 0;border-bottom:1px solid var(--line)}
#results .f{word-break:break-all}#results progress{width:100%}#results .state{grid-column:1/3;font-size:.85rem;color:var(--mut)}
#results li.ok .state{color:#2e7d32}#results li.fail .state{color:#c62828}
td.a{white-space:nowrap}td.a button{background:none;color:var(--acc);padding:0 .2rem;margin-left:.4rem;text-decoration:underline}
dialog{border:1px solid var(--line);border-radius:.5rem;background:var(--bg);color:var(--fg);max-width:min(28rem,92vw)}
dialog form{display:grid;gap:.6rem}dialog p{margin:0;word-break:break-all}dialog .row{display:flex;gap:.5rem;justify-content:flex-end}
dialog button.no{background:none;color:var(--fg);border:1px solid var(--line)}
header form{display:inline}header .who{float:right}
#search{display:flex;gap:.5rem;margin:.5rem 0}#search input{flex:1;min-width:10rem}
nav.pages{display:flex;gap:1rem;flex-wrap:wrap;margin:.5rem 0}#pageinfo{margin:.5rem 0}
@media (max-width:40rem){td.d,th.d{display:none}td.a{white-space:normal}body{font-size:16px}#results li{grid-template-columns:1fr 5rem}}
`;

/** A page's text up to its body's content. */
function pageHead(title: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="same-origin">
<link rel="icon" href="data:,">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style></head>
<body>`;
}

/** A page's text after its body's content: the footer, and the script if it has one. */
function pageFoot(options: { script?: boolean } = {}): string {
  return `
<footer>${escapeHtml(`${NAME} ${VERSION}`)}</footer>${
    options.script
      ? `\n<script src="${escapeHtml(SCRIPT_PATH)}&amp;v=${escapeHtml(VERSION)}" defer></script>`
      : ""
  }
</body></html>
`;
}

function page(title: string, body: string, options: { script?: boolean } = {}): string {
  return pageHead(title) + body + pageFoot(options);
}

/** A date as the listing shows it: `2026-12-03 07:13` in UTC. */
function shownDate(ms: number): string {
  return ms ? new Date(ms).toISOString().slice(0, 16).replace("T", " ") : "";
}

/** Options for {@link ListingPageWriter}. */
export interface ListingPageOptions {
  /** Show the sign-out button (a browser signed in with the cookie). */
  signedIn?: boolean;
  /** Offer uploads, rename, delete and new folder (the server takes changes from this visitor). */
  canChange?: boolean;
  /** Offer a sign-in link (the server has a token, and reading is public). */
  canSignIn?: boolean;
  /** Offer the folder as a tar archive (`?tar`). */
  archives?: boolean;
  /** The folder is shown a page at a time: which page this is (see {@link ListingPage}). */
  page?: ListingPage;
  /** The order the rows come in (default by name), which the column headers show and change. */
  sort?: PageSort;
}

/**
 * What the page of a big folder says about itself: where it is and where its links lead (the
 * counts and links of lib/folder_page.ts `FolderPage`), with the most entries on a page (`size`)
 * and the search (`query`, `?q=`, "" for none).
 */
export interface ListingPage extends Omit<FolderPage, "entries"> {
  /** Most entries on a page. */
  size: number;
  /** The search (`?q=`), "" for none. */
  query: string;
}

/**
 * The address of a page of `folder`: after `cursor` (null: the first page), with the query, in
 * the order `sort` (the default by name says nothing).
 */
export function pageHref(
  folder: string,
  cursor: PageCursor | null,
  query: string,
  sort: PageSort = BY_NAME,
): string {
  const params = new URLSearchParams();
  if (query) params.set("q", query);
  for (const [key, value] of sortParams(sort)) params.set(key, value);
  if (cursor) params.set("after", formatCursor(cursor));
  const search = params.toString();
  return hrefOf(folder, true) + (search ? "?" + search : "");
}

/** Where the page's script is served (see lib/http/page_script.ts). */
export const SCRIPT_PATH = "/?asset=page.js";

/**
 * The HTML listing of `folder` ("" for the root), written a batch of entries at a time: the
 * {@link head} (title, header, the table's head), the rows of each batch ({@link add}: names
 * relative to the root, in the order handed, which {@link ListingPageOptions.sort} names), then
 * the {@link end}. It keeps a count, never the rows.
 *
 * @example
 * ```ts
 * import { ListingPageWriter } from "./listing_page.ts";
 *
 * const writer = new ListingPageWriter("photos", {});
 * const html = writer.head() +
 *   writer.add([{ name: "photos/a.jpg", type: "file", size: 1, mtime: 0 }]) + writer.end();
 * console.log(html.includes("a.jpg"));
 * ```
 */
export class ListingPageWriter {
  #folder: string;
  #options: ListingPageOptions;
  #rows = 0;

  constructor(folder: string, options: ListingPageOptions = {}) {
    this.#folder = folder;
    this.#options = options;
  }

  /** The page up to the first row. */
  head(): string {
    const folder = this.#folder;
    const options = this.#options;
    const segments = folder === "" ? [] : folder.split("/");
    const crumbs = [`<a href="/">${escapeHtml(NAME)}</a>&#8202;/`];
    segments.forEach((segment, i) => {
      const href = hrefOf(segments.slice(0, i + 1).join("/"), true);
      crumbs.push(`<a href="${escapeHtml(href)}">${escapeHtml(segment)}</a>/`);
    });
    const parent = segments.length > 0
      ? `<tr><td class="n"><a href="${
        escapeHtml(hrefOf(segments.slice(0, -1).join("/"), true))
      }" class="dir">..</a></td><td class="s"></td><td class="d"></td><td></td></tr>`
      : "";
    const title = "/" + folder;
    const who = options.signedIn
      ? `<form class="who" method="post" action="/?logout"><button type="submit">Sign out</button></form>`
      : options.canSignIn
      ? `<a class="who" href="${
        escapeHtml(`/?login&next=${encodeURIComponent(hrefOf(folder, true))}`)
      }">Sign in to upload</a>`
      : "";
    const paged = options.page;
    const sort = options.sort ?? BY_NAME;
    // A paged folder is searched by the server (`?q=`), with or without JavaScript, in the
    // order it is shown in; a folder shown whole is filtered in the browser.
    const search = paged
      ? `<form id="search" role="search" method="get" action="${
        escapeHtml(hrefOf(folder, true))
      }"><input id="q" name="q" type="search" value="${escapeHtml(paged.query)}" ` +
        `maxlength="${MAX_QUERY_CHARS}" placeholder="Search this folder by name" ` +
        `aria-label="Search this folder by name" autocomplete="off">` +
        sortParams(sort).map(([key, value]) =>
          `<input type="hidden" name="${key}" value="${escapeHtml(value)}">`
        ).join("") +
        `<button type="submit">Search</button></form>`
      : "";
    // Each column's title leads to the folder sorted by it (the sorted one's, the other way),
    // from the first page, keeping the search.
    const column = (key: SortKey, label: string, css: string) => {
      const here = sort.key === key;
      const to = { key, descending: here && !sort.descending };
      const aria = here ? ` aria-sort="${sort.descending ? "descending" : "ascending"}"` : "";
      const href = pageHref(folder, null, paged?.query ?? "", to);
      return `<th${css}${aria} data-key="${key}"><a class="sort" href="${
        escapeHtml(href)
      }">${label}</a></th>`;
    };
    const tools = `<div id="tools" hidden>${
      paged ? "" : `<input id="filter" type="search" ` +
        `placeholder="Filter by name" aria-label="Filter by name" autocomplete="off">`
    }` +
      (options.canChange ? `<button type="button" id="newfolder">New folder</button>` : "") +
      `</div>`;
    // The file inputs are invisible, so their labels take the keyboard's focus instead of them.
    const upload = options.canChange
      ? `<section id="upload" hidden aria-label="Upload">
<div id="drop">Drop files or folders here, or <label for="pick" tabindex="0">choose files</label>
<input id="pick" type="file" multiple tabindex="-1"> or <label for="pickdir" tabindex="0">a folder</label>
<input id="pickdir" type="file" webkitdirectory tabindex="-1"></div>
<label><input id="overwrite" type="checkbox"> Replace files that exist</label>
<ul id="results" aria-live="polite"></ul></section>`
      : "";
    return pageHead(`${title} — ${NAME}`) +
      `<header>${who}<h1>${crumbs.join("")}</h1>${search}${tools}</header>
<main>${upload}${paged ? pageInfo(folder, paged, sort) + pageLinks(folder, paged, sort) : ""}` +
      `<table class="listing"${options.canChange ? ' data-change="1"' : ""}${
        paged ? ' data-paged="1"' : ""
      } data-sort="${sort.key}" data-order="${sort.descending ? "desc" : "asc"}"><thead><tr>` +
      column("name", "Name", "") + column("size", "Size", ' class="s"') +
      column("mtime", "Modified (UTC)", ' class="d"') + `<th></th></tr></thead>
<tbody>${parent}
`;
  }

  /** The rows of `entries`, the next ones of the folder. */
  add(entries: TreeEntry[]): string {
    let text = "";
    for (const row of entries) {
      text += (this.#rows++ === 0 ? "" : "\n") + listingRow(row);
    }
    return text;
  }

  /** The rest of the page, after the last row. */
  end(): string {
    const folder = this.#folder;
    const paged = this.#options.page;
    const empty = `<p class="mut" id="empty"${this.#rows ? " hidden" : ""}>${
      !paged
        ? "This folder is empty."
        : paged.query && paged.matching === 0
        ? `No name in this folder holds “${escapeHtml(paged.query)}”.`
        : "Nothing after this place in the folder."
    }</p>`;
    const archive = this.#options.archives
      ? `<p><a href="${
        escapeHtml(hrefOf(folder, true))
      }?tar" download>Download this folder (.tar)</a></p>`
      : "";
    const links = paged ? pageLinks(folder, paged, this.#options.sort ?? BY_NAME) : "";
    return `</tbody></table>${empty}${links}${archive}</main>` + pageFoot({ script: true });
  }
}

/** A number as the page shows it: `100,000`. */
function count(n: number): string {
  return n.toLocaleString("en");
}

/** Where a page of a big folder is: `Entries 5,001–10,000 of 100,000, ...`. */
function pageInfo(folder: string, page: ListingPage, sort: PageSort): string {
  const first = page.before + 1;
  const last = Math.min(page.before + page.size, page.matching);
  const of = page.query
    ? `${count(page.matching)} whose name holds “${escapeHtml(page.query)}” (of ${
      count(page.total)
    } in this folder)`
    : count(page.total);
  const where = page.total === 0
    ? "This folder is empty"
    : page.query && page.matching === 0
    ? `No name among the ${count(page.total)} entries of this folder holds “${
      escapeHtml(page.query)
    }”`
    : first > last
    ? `None of the ${of} entries comes after this place`
    : `Entries ${count(first)}–${count(last)} of ${of}`;
  const whole = page.query
    ? ` <a href="${escapeHtml(pageHref(folder, null, "", sort))}">Show the whole folder</a>.`
    : "";
  return `<p class="mut" id="pageinfo">${where}, ${sortWords(sort)}, folders first, ${
    count(page.size)
  } a page.${whole}</p>`;
}

/** How the page says its order: `by name`, `by size, largest first`... */
function sortWords(sort: PageSort): string {
  if (sort.key === "name") return sort.descending ? "by name, reversed" : "by name";
  const [what, small, large] = sort.key === "size"
    ? ["size", "smallest", "largest"]
    : ["date", "oldest", "newest"];
  return `by ${what}, ${sort.descending ? large : small} first`;
}

/** The links to the first, previous, next and last pages, each shown greyed when there is none. */
function pageLinks(folder: string, page: ListingPage, sort: PageSort): string {
  const link = (text: string, rel: string, to: PageLink, here: boolean) =>
    to === undefined || here
      ? `<span class="mut" aria-disabled="true">${text}</span>`
      : `<a rel="${rel}" href="${escapeHtml(pageHref(folder, to, page.query, sort))}">${text}</a>`;
  const onFirst = page.before === 0;
  const onLast = page.next === undefined;
  return `<nav class="pages" aria-label="Pages">` +
    link("« First", "first", null, onFirst) +
    link("‹ Previous", "prev", page.previous, onFirst) +
    link("Next ›", "next", page.next, onLast) +
    link("Last »", "last", page.last, onLast) + `</nav>`;
}

/** One entry's row of the listing. */
function listingRow(row: TreeEntry): string {
  const folderRow = row.type === "dir";
  const base = row.name.split("/").at(-1)!;
  const name = escapeHtml(base);
  const cells = (link: string, size: string, date: string, download: string) =>
    `<td class="n">${link}</td><td class="s">${size}</td><td class="d">${date}</td>` +
    `<td class="a">${download}</td>`;
  if (row.notUtf8) {
    // No request can name it: shown, never linked, never offered for a change.
    return `<tr data-name="${name}" data-size="0" data-mtime="0" data-folder="${
      folderRow ? 1 : 0
    }" data-fixed="1">` +
      cells(
        `<span${folderRow ? ' class="dir"' : ""}>${name}${folderRow ? "/" : ""}</span> ` +
          `<span class="mut">(name not UTF-8: rename it on the server)</span>`,
        "?",
        "",
        "",
      ) +
      `</tr>`;
  }
  const href = escapeHtml(hrefOf(row.name, folderRow));
  const link = folderRow
    ? `<a href="${href}" class="dir">${name}/</a>`
    : `<a href="${href}">${name}</a>`;
  const download = folderRow ? "" : `<a href="${href}?download" download="${name}">download</a>`;
  return `<tr data-name="${name}" data-size="${row.size}" data-mtime="${row.mtime}" data-folder="${
    folderRow ? 1 : 0
  }">` +
    cells(
      link,
      folderRow ? "" : escapeHtml(formatBytes(row.size)),
      shownDate(row.mtime),
      download,
    ) + `</tr>`;
}

/** The login form; `failed` shows that the last token was wrong. */
export function renderLogin(next: string, failed: boolean): string {
  return page(
    `Sign in — ${NAME}`,
    `<main><form class="login" method="post" action="/?login">
<h1>Sign in</h1>
<p class="mut">This server needs its token.</p>
${failed ? `<p class="err" role="alert">Wrong token.</p>` : ""}
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="${escapeHtml(next)}">
<button type="submit">Sign in</button>
</form></main>`,
  );
}

/** A one-message page for an error a browser asked for. */
export function renderError(status: number, message: string): string {
  return page(
    `${status} — ${NAME}`,
    `<main><h1>${status}</h1><p>${
      escapeHtml(message)
    }</p><p><a href="/">Back to the top folder</a></p></main>`,
  );
}
