// The dashboard's own behaviour, kept out of the markup: the Content-Security-Policy runs no
// inline script and no htmx `hx-on` code (that would need eval).
(function () {
  "use strict";

  // A form marked data-reset-on-success empties itself once htmx's request succeeds (the
  // interview's question box, ready for the next question).
  document.addEventListener("htmx:afterRequest", (event) => {
    const form = event.detail.elt;
    if (event.detail.successful && form instanceof HTMLFormElement && form.hasAttribute("data-reset-on-success")) {
      form.reset();
    }
  });
})();
