// The dashboard's own behaviour, kept out of the markup: the Content-Security-Policy runs no
// inline script and no htmx `hx-on` code (that would need eval).
(function () {
  "use strict";

  // A field linked to an error slot (aria-describedby) is marked invalid while the slot has a
  // problem: the preview refreshes the slots out of band, not the fields (that would lose what is
  // being typed), so the marks follow here. The red border is myriad.css's.
  document.addEventListener("htmx:afterSettle", () => {
    document.querySelectorAll(".field-error[id]").forEach((slot) => {
      const bad = slot.textContent.trim() !== "";
      document.querySelectorAll(`[aria-describedby~="${slot.id}"]`).forEach((field) => {
        const others = field.getAttribute("aria-describedby").split(" ").filter((id) => id !== slot.id);
        const elsewhere = others.some((id) => document.getElementById(id)?.textContent.trim());
        if (bad || elsewhere) field.setAttribute("aria-invalid", "true");
        else field.removeAttribute("aria-invalid");
      });
    });
  });

  // The run page's feed shows each event once. Its stream starts after the newest event the page
  // was served with: a page restored from the browser's history (htmx keeps a copy of it), or a
  // stream opened anew by the SSE extension after an error, is sent again what it already shows.
  document.addEventListener("htmx:load", (event) => {
    const item = event.detail.elt;
    if (!(item instanceof HTMLLIElement) || !item.dataset.event || !item.parentElement) return;
    const same = item.parentElement.querySelectorAll(`li[data-event="${CSS.escape(item.dataset.event)}"]`);
    if (same.length > 1) item.remove();
  });

  // An error answer is shown, not dropped (htmx swaps no 4xx/5xx by default; the meta htmx-config
  // lets 422s through, which carry a form with its problems). A boosted link or form gets the
  // error page in place of the page, as a full load would show it; a request aimed at part of a
  // page (a button, a filter) gets the server's error line beside the element that asked, so the
  // part it targets (a form being filled in, the chart, the controls) stays as it was.
  const ERROR_LINE = "request-error";
  document.addEventListener("htmx:beforeSwap", (event) => {
    const detail = event.detail;
    if (detail.shouldSwap || detail.xhr.status < 400) return;
    if (detail.boosted) {
      detail.shouldSwap = true;
      detail.target = document.body;
      return;
    }
    const template = document.createElement("template");
    template.innerHTML = detail.serverResponse || "";
    let line = template.content.querySelector("p.error");
    if (!line) {
      line = document.createElement("p");
      line.className = "error";
      line.setAttribute("role", "alert");
      line.textContent = `The server answered ${detail.xhr.status} ${detail.xhr.statusText}.`.replace(/ \.$/, ".");
    }
    line.classList.add(ERROR_LINE);
    const asker = detail.requestConfig?.elt || detail.elt;
    const place = asker.closest("form, .controls, label") || asker;
    const previous = place.nextElementSibling;
    if (previous?.classList.contains(ERROR_LINE)) previous.remove();
    place.after(line);
  });

  // A request that succeeds takes away the error line its element was shown before.
  document.addEventListener("htmx:afterRequest", (event) => {
    if (!event.detail.successful) return;
    const place = event.detail.elt.closest?.("form, .controls, label") || event.detail.elt;
    const next = place.nextElementSibling;
    if (next?.classList.contains(ERROR_LINE)) next.remove();
  });

  // A form marked data-reset-on-success empties itself once htmx's request succeeds (the
  // interview's question box, ready for the next question).
  document.addEventListener("htmx:afterRequest", (event) => {
    const form = event.detail.elt;
    if (event.detail.successful && form instanceof HTMLFormElement && form.hasAttribute("data-reset-on-success")) {
      form.reset();
    }
  });
})();
