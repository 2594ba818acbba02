// leadproxy dashboard: local times, delete confirmation, filters that
// apply on change. The page works without it.
(function () {
	"use strict";
	var fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
	document.querySelectorAll("time[datetime]").forEach(function (t) {
		var d = new Date(t.getAttribute("datetime"));
		if (!isNaN(d)) {
			t.title = t.textContent;
			t.textContent = fmt.format(d);
		}
	});
	document.querySelectorAll("form[data-confirm]").forEach(function (f) {
		f.addEventListener("submit", function (e) {
			if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
		});
	});
	document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
		s.addEventListener("change", function () { s.form.submit(); });
	});
})();
