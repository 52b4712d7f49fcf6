// The dashboard's one script: the admin token goes with every action form, live regions refresh themselves,
// removals ask first. Pages work without it, except the actions (they need the token).
(function () {
  "use strict";
  const box = document.getElementById("token");
  if (box) {
    box.value = sessionStorage.getItem("transport-token") || "";
    box.addEventListener("input", () => sessionStorage.setItem("transport-token", box.value));
  }
  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (form.method.toLowerCase() !== "post" || form.id === "trace-form") return;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) { e.preventDefault(); return; }
    let field = form.querySelector("input[name=token]");
    if (!field) {
      field = document.createElement("input");
      field.type = "hidden"; field.name = "token";
      form.appendChild(field);
    }
    field.value = box ? box.value : "";
  });
  const live = document.getElementById("live");
  if (live && live.dataset.refresh) {
    const every = parseFloat(live.dataset.refresh) * 1000;
    const refresh = async () => {
      try {
        const response = await fetch(window.location.href, { cache: "no-store" });
        if (response.ok) {
          const page = new DOMParser().parseFromString(await response.text(), "text/html");
          const fresh = page.getElementById("live");
          if (fresh) live.innerHTML = fresh.innerHTML;
        }
      } catch (err) { /* the hub is restarting: try again at the next tick */ }
      setTimeout(refresh, every);
    };
    setTimeout(refresh, every);
  }
})();
