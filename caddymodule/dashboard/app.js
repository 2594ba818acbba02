// leadproxy dashboard: delete confirmation, filters that apply on change.
// The page works without it. Times are the server's, in the site's time
// zone (the timezone option), not the browser's.
(function () {
	"use strict";
	document.querySelectorAll("form[data-confirm]").forEach(function (f) {
		f.addEventListener("submit", function (e) {
			if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
		});
	});
	document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
		s.addEventListener("change", function () { s.form.submit(); });
	});
})();
