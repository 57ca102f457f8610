/**
 * The page at /join/{externalId}. The user's JWT arrives in the URL fragment
 * (`#token=…`), which browsers never send to a server nor put in a Referer;
 * it is read once, kept in this module's memory only, and the fragment is
 * removed from the address bar and the history entry at once.
 */
import { mountJoinUi } from "./join-ui.js";

function takeTokenFromFragment(): string | null {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const token = fragment.get("token");
  if (window.location.hash) {
    history.replaceState(history.state, "", window.location.pathname + window.location.search);
  }
  return token;
}

function externalIdFromPath(): string {
  const path = window.location.pathname;
  return decodeURIComponent(path.slice(path.lastIndexOf("/join/") + "/join/".length));
}

const token = takeTokenFromFragment();
const container = document.getElementById("join");
if (container) {
  mountJoinUi(container, {
    // This script is served at {service}/client/join-page.js: the service is one level up, whatever prefix a proxy adds.
    baseUrl: new URL("..", import.meta.url).href,
    externalId: externalIdFromPath(),
    getToken: () => token ?? "",
  });
}
