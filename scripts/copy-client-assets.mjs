// Part of `npm run build`: the join page's HTML, stylesheet and icon go next
// to the compiled client in dist/client, which the service serves.
import { copyFile, mkdir, readdir } from "node:fs/promises";

const from = new URL("../src/client/", import.meta.url);
const to = new URL("../dist/client/", import.meta.url);
await mkdir(to, { recursive: true });
for (const name of await readdir(from)) {
  if (/\.(html|css|svg)$/.test(name)) await copyFile(new URL(name, from), new URL(name, to));
}
