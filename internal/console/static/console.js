// keygate API Keys console: opens the dialogs in place, posts their forms
// with fetch() and shows a new key's secret once. Without this script the
// page still lists, filters and searches keys, and its links open the
// dialogs as server-rendered pages.
//
// A secret only ever lives in the value of #secret-value while the
// show-once dialog is open; it is cleared when the dialog closes, and it is
// never put in a URL, the history, storage or a cookie.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function announce(message) {
    const live = $("#announcer");
    const notice = $("#notice");
    if (notice) {
      notice.textContent = message;
      notice.hidden = false;
    }
    if (live) {
      // Cleared first so that the same message twice is read twice.
      live.textContent = "";
      setTimeout(() => { live.textContent = message; }, 50);
    }
  }

  function showJSOnly(root) {
    $$("[data-js]", root).forEach((el) => { el.hidden = false; });
  }

  function clearErrors(form) {
    $$("[data-error-for]", form).forEach((el) => { el.textContent = ""; el.hidden = true; });
    $$("[aria-invalid]", form).forEach((el) => el.removeAttribute("aria-invalid"));
  }

  function showError(form, field, message) {
    let target = $('[data-error-for="' + CSS.escape(field || "") + '"]', form);
    if (!target) target = $('[data-error-for=""]', form);
    if (!target) return;
    target.textContent = message;
    target.hidden = false;
    const input = field ? $('[name="' + CSS.escape(field) + '"]', form) : null;
    if (input && input.type !== "hidden") {
      if (input.type === "text" || input.tagName === "TEXTAREA") input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  function setFields(root, values) {
    for (const [name, value] of Object.entries(values)) {
      $$('[data-field="' + name + '"]', root).forEach((el) => {
        if (el.tagName === "INPUT" || el.tagName === "TEXTAREA") el.value = value;
        else el.textContent = value;
      });
    }
  }

  function openDialog(name, trigger) {
    const dialog = document.getElementById(name + "-dialog");
    if (!dialog) return;
    const form = $("form", dialog);
    if (form && form.method === "post") {
      form.reset();
      clearErrors(form);
    }
    if (trigger && trigger.dataset.id) {
      const values = { id: trigger.dataset.id, name: trigger.dataset.name || "" };
      if (name === "edit") {
        values.title = values.name;
        values.metadata = trigger.dataset.metadata || "";
        values.allowed_origins = trigger.dataset.origins || "";
        values.allowed_ips = trigger.dataset.ips || "";
        values.rate_limits = trigger.dataset.rateLimits || "";
      }
      setFields(dialog, values);
    }
    closeMenus();
    if (!dialog.open) dialog.showModal();
  }

  // The show-once dialog.
  const secretDialog = $("#secret-dialog");
  const secretInput = $("#secret-value");

  function showSecret(data) {
    const key = data.api_key;
    const display = data.display || {};
    setFields(secretDialog, {
      name: key.name,
      id: key.id,
      scope: display.scope || key.scope,
      expires: display.expires || "Never",
      previous_expires: display.previous_expires || "",
      origins_warning: display.origins_warning || "",
    });
    $("[data-origins-warning]", secretDialog).hidden = !display.origins_warning;
    $('[data-field="previous"]', secretDialog).hidden = !data.previous;
    $("#secret-title").textContent = data.previous ? "Your rotated API key" : "Your new API key";
    $("[data-copy-status]", secretDialog).textContent = "";
    secretInput.value = data.secret;
    secretDialog.showModal();
  }

  function forgetSecret() {
    secretInput.value = "";
    // A page rendered by the server (no script at the time) carried the
    // secret in the attribute too.
    secretInput.removeAttribute("value");
    $("[data-copy-status]", secretDialog).textContent = "";
  }

  if (secretDialog) {
    secretDialog.addEventListener("close", () => {
      if (secretDialog.open) return; // reopened as a modal meanwhile
      forgetSecret();
      const create = $('[data-dialog="create"]');
      if (create) create.focus();
    });
  }

  // Copying.
  async function copyText(text, input) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (e) {
      // No clipboard API (an insecure origin) or no permission: select the
      // text and try the old command; the user can still press Ctrl+C.
      if (input) {
        input.focus();
        input.select();
        try { return document.execCommand("copy"); } catch (e2) { return false; }
      }
      return false;
    }
  }

  document.addEventListener("click", async (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;

    const opener = target.closest("[data-dialog]");
    if (opener) {
      event.preventDefault();
      openDialog(opener.dataset.dialog, opener);
      return;
    }

    // Cancel and Close are links back to the list, for browsers without
    // script; here they just close their dialog. They are links, not
    // submit buttons, so that Enter in a field submits the form.
    const closer = target.closest("[data-close]");
    if (closer) {
      event.preventDefault();
      const dialog = closer.closest("dialog");
      if (dialog) dialog.close();
      return;
    }

    const copyTarget = target.closest("[data-copy-target]");
    if (copyTarget) {
      const input = document.getElementById(copyTarget.dataset.copyTarget);
      const ok = await copyText(input.value, input);
      const status = $("[data-copy-status]", copyTarget.closest("dialog"));
      status.textContent = ok ? "Copied to the clipboard." : "Selected: press Ctrl+C (⌘C) to copy.";
      return;
    }

    const copyValue = target.closest("[data-copy-text]");
    if (copyValue) {
      const ok = await copyText(copyValue.dataset.copyText, null);
      announce(ok ? "Key ID copied." : "Could not copy the key ID: select it and press Ctrl+C.");
      return;
    }

    if (!target.closest("details.menu")) closeMenus();
  });

  function closeMenus(except) {
    $$("details.menu[open]").forEach((menu) => { if (menu !== except) menu.open = false; });
  }

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const menu = event.target instanceof Element ? event.target.closest("details.menu[open]") : null;
    if (menu) {
      menu.open = false;
      $("summary", menu).focus();
    }
  });

  document.addEventListener("toggle", (event) => {
    if (event.target.matches && event.target.matches("details.menu") && event.target.open) closeMenus(event.target);
  }, true);

  // Filters submit as soon as they change.
  $$("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.requestSubmit());
  });

  // Posting the dialogs' forms.
  $$("form[data-op]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const dialog = form.closest("dialog");
      const buttons = $$("button", form);
      clearErrors(form);
      buttons.forEach((b) => { b.disabled = true; });
      form.setAttribute("aria-busy", "true");
      let response, data;
      try {
        response = await fetch(form.action, {
          method: "POST",
          headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams(new FormData(form)),
          credentials: "same-origin",
          cache: "no-store",
        });
        data = await response.json();
      } catch (e) {
        response = null;
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
        form.removeAttribute("aria-busy");
      }
      if (!response || !data) {
        showError(form, "", "The gateway did not answer. Check your connection and try again.");
        return;
      }
      if (!response.ok) {
        const err = data.error || {};
        showError(form, err.field, err.message || "The change failed (HTTP " + response.status + ").");
        return;
      }
      dialog.close();
      const op = form.dataset.op;
      await refreshList();
      // Where the change is in force: "Revoked on 3 of 3 instances."
      const spread = data.propagation_text ? " " + data.propagation_text : "";
      if (op === "revoke" || op === "update") {
        announce((op === "revoke"
          ? "Key “" + data.api_key.name + "” revoked. Requests with it now fail."
          : "Key “" + data.api_key.name + "” updated.") + spread);
        const keys = $("#keys");
        if (keys) keys.focus();
      } else {
        announce((op === "rotate" ? "Key “" + data.api_key.name + "” rotated." : "Key “" + data.api_key.name + "” created.") + spread);
        showSecret(data);
      }
    });
  });

  // refreshList loads the page again and swaps in its list and pager,
  // so that the table shows a change without a reload.
  async function refreshList() {
    try {
      const response = await fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("keys");
      const current = $("#keys");
      if (fresh && current) {
        current.replaceWith(document.adoptNode(fresh));
        showJSOnly($("#keys"));
      }
    } catch (e) {
      // The list stays as it was; a reload shows the change.
    }
  }

  // Dialogs the server opened (a page rendered without script, or a link
  // followed before this file loaded) become modal.
  showJSOnly(document);
  $$("dialog[data-server-open]").forEach((dialog) => {
    dialog.removeAttribute("data-server-open");
    if (dialog.open && !dialog.matches(":modal")) {
      dialog.close();
      dialog.showModal();
    }
  });
})();
