// The one script of the studio: a form marked data-busy (running a replica takes a few seconds)
// disables its button and says so after submit, so it is not sent twice. Pages work without it.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const note = form.dataset ? form.dataset.busy : null;
  if (!note) return;
  const button = form.querySelector("button[type=submit]");
  if (button) {
    button.disabled = true;
    button.textContent = note;
  }
});
