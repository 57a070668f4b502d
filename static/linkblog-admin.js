'use strict';
// Live preview beside each Markdown field marked data-markdown-preview="<url>": the server renders it
// with the site's own renderer and sanitizer (no second Markdown dialect here). Without JavaScript the
// form works as before, without a preview.
document.addEventListener('DOMContentLoaded', function() {
    const token = document.querySelector('input[name=csrfmiddlewaretoken]');
    document.querySelectorAll('textarea[data-markdown-preview]').forEach(function(field) {
        const preview = document.createElement('div');
        preview.className = 'markdown-preview';
        preview.setAttribute('aria-live', 'polite');
        preview.setAttribute('aria-label', 'Preview');
        const pair = document.createElement('div');
        pair.className = 'markdown-with-preview';
        field.parentNode.insertBefore(pair, field);
        pair.append(field, preview);
        let timer = null, latest = 0;
        function refresh() {
            const request = ++latest;
            fetch(field.dataset.markdownPreview, {
                method: 'POST', credentials: 'same-origin',
                headers: {'X-CSRFToken': token ? token.value : ''},
                body: new URLSearchParams({text: field.value}),
            }).then(function(response) {
                return response.ok ? response.text() : Promise.reject(response.status);
            }).then(function(html) {
                if (request === latest) { preview.innerHTML = html; }  // sanitized by the server
            }).catch(function() {
                if (request === latest) { preview.textContent = 'Preview unavailable.'; }
            });
        }
        field.addEventListener('input', function() { clearTimeout(timer); timer = setTimeout(refresh, 200); });
        refresh();
    });
});
