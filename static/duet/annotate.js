// Keyboard shortcuts of the annotate page. The forms work without this file (and without
// htmx); it only makes every action one or two key presses. Loaded from /static/ because the
// page's Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  var CHOICE_KEYS = {
    "1": "left", ArrowLeft: "left",
    "2": "right", ArrowRight: "right",
    "3": "tie", t: "tie",
    "4": "both_bad", b: "both_bad",
  };
  var STRENGTH_KEYS = { q: "slightly", w: "clearly", e: "much" };
  var SIDED = { left: true, right: true };
  var QUICK_KEY = "duet.quickMode";

  function onAnnotatePage() {
    return document.body && document.body.dataset.page === "annotate";
  }

  function judgeForm() {
    return document.getElementById("judge-form");
  }

  function quickMode() {
    try {
      return window.localStorage.getItem(QUICK_KEY) === "1";
    } catch (e) {
      return false;
    }
  }

  function checkedValue(form, name) {
    var input = form.querySelector('input[name="' + name + '"]:checked');
    return input ? input.value : "";
  }

  // Strength means "how much better", so it is sent only with a left or right choice.
  function syncStrength(form) {
    var choice = checkedValue(form, "choice");
    var applies = !choice || SIDED[choice] === true;
    form.querySelectorAll('input[name="strength"]').forEach(function (input) {
      input.disabled = !applies;
    });
    form.classList.toggle("has-choice", Boolean(choice));
  }

  function submit(form) {
    if (form && checkedValue(form, "choice")) {
      form.requestSubmit();
    }
  }

  function choose(form, value) {
    var input = form.querySelector('input[name="choice"][value="' + value + '"]');
    if (!input) return;
    input.checked = true;
    syncStrength(form);
    if (quickMode()) submit(form);
  }

  function toggleStrength(form, value) {
    var input = form.querySelector('input[name="strength"][value="' + value + '"]');
    if (!input || input.disabled) return;
    input.checked = !input.checked;
  }

  function submitById(id) {
    var form = document.getElementById(id);
    var button = form && form.querySelector("button[type=submit]");
    if (form && !(button && button.disabled)) form.requestSubmit();
  }

  // The campaign's guidelines, one key away on every card.
  function guidelinesPanel() {
    return document.getElementById("guidelines-panel");
  }

  function toggleGuidelines(open) {
    var panel = guidelinesPanel();
    if (!panel) return false;
    panel.hidden = !open;
    if (open) panel.scrollIntoView({ block: "nearest" });
    return true;
  }

  function isTyping(target) {
    if (!(target instanceof HTMLElement)) return false;
    if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
    return target.tagName === "INPUT" && ["radio", "checkbox", "submit", "button"].indexOf(target.type) === -1;
  }

  function onKeyDown(event) {
    if (!onAnnotatePage() || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    var form = judgeForm();
    var target = event.target;
    if (isTyping(target)) {
      if (target.id !== "id_reason") return;
      if (event.key === "Escape") {
        event.preventDefault();
        target.blur();
      } else if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        submit(form);
      }
      return;
    }
    var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    var panel = guidelinesPanel();
    if (key === "g" && panel) {
      event.preventDefault();
      toggleGuidelines(panel.hidden);
      return;
    }
    if (key === "Escape" && panel && !panel.hidden) {
      event.preventDefault();
      toggleGuidelines(false);
      return;
    }
    if (key === "u") {
      event.preventDefault();
      submitById("undo-form");
      return;
    }
    if (!form) return;
    if (Object.prototype.hasOwnProperty.call(CHOICE_KEYS, key) && !event.shiftKey) {
      event.preventDefault();
      choose(form, CHOICE_KEYS[key]);
    } else if (Object.prototype.hasOwnProperty.call(STRENGTH_KEYS, key)) {
      event.preventDefault();
      toggleStrength(form, STRENGTH_KEYS[key]);
    } else if (key === "r") {
      event.preventDefault();
      form.querySelector("#id_reason").focus();
    } else if (key === "s") {
      event.preventDefault();
      submitById("skip-form");
    } else if (key === "Enter") {
      event.preventDefault();
      submit(form);
    }
  }

  // A checked strength pill clicked again clears, like its key pressed again.
  function onClick(event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.name !== "strength") return;
    if (input.dataset.wasChecked === "1") {
      input.checked = false;
    }
  }

  function onPointerDown(event) {
    var label = event.target instanceof Element ? event.target.closest("label.pill") : null;
    var input = label && label.querySelector('input[name="strength"]');
    if (input) input.dataset.wasChecked = input.checked ? "1" : "";
  }

  function onChange(event) {
    var form = judgeForm();
    if (form && event.target instanceof HTMLInputElement && event.target.name === "choice") {
      syncStrength(form);
      if (quickMode()) submit(form);
    }
  }

  function setUpCard() {
    var form = judgeForm();
    if (form) syncStrength(form);
  }

  function setUpQuickToggle() {
    var toggle = document.getElementById("quick-mode");
    if (!toggle) return;
    toggle.checked = quickMode();
    toggle.addEventListener("change", function () {
      try {
        window.localStorage.setItem(QUICK_KEY, toggle.checked ? "1" : "0");
      } catch (e) {
        // Private browsing may refuse storage; the toggle then lasts for this page only.
      }
      toggle.blur();
    });
  }

  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("pointerdown", onPointerDown);
  document.addEventListener("click", onClick);
  document.addEventListener("change", onChange);
  document.addEventListener("htmx:afterSettle", setUpCard);
  document.addEventListener("DOMContentLoaded", function () {
    setUpQuickToggle();
    setUpCard();
  });
})();
