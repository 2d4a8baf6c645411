// Live updates for the immortus dashboard: no build step, no dependency.
// Every few seconds the page asks the store's change feed what changed since its cursor,
// and re-downloads only what it shows of that: the changed rows of the list, or the main
// part of the overview or of a job's page. Without JavaScript the pages still work.
(function () {
  'use strict';
  var body = document.body;
  var prefix = body.getAttribute('data-prefix') || '';
  var live = body.getAttribute('data-live');
  if (!live || !window.fetch) { return; }
  var cursor = null;
  var INTERVAL = 2000;

  function get(url, partial) {
    var headers = partial ? { 'X-Immortus-Partial': '1' } : {};
    return fetch(url, { headers: headers, credentials: 'same-origin' }).then(function (answer) {
      if (!answer.ok) { throw new Error('HTTP ' + answer.status); }
      return partial ? answer.text() : answer.json();
    });
  }

  function shownIds() {
    var rows = document.querySelectorAll('#rows tr[data-job]');
    return Array.prototype.map.call(rows, function (row) { return row.getAttribute('data-job'); });
  }

  function refreshRows(changed) {
    var shown = shownIds();
    var wanted = changed === null ? shown : shown.filter(function (id) { return changed.indexOf(id) >= 0; });
    if (!wanted.length) { return Promise.resolve(); }
    var query = wanted.map(function (id) { return 'id=' + encodeURIComponent(id); }).join('&');
    return get(prefix + '/rows?' + query, false).then(function (answer) {
      var template = document.createElement('template');
      wanted.forEach(function (id) {
        var html = answer.rows[id];
        var old = document.querySelector('#rows tr[data-job="' + CSS.escape(id) + '"]');
        if (!html || !old) { return; }
        template.innerHTML = '<table><tbody>' + html + '</tbody></table>';
        old.replaceWith(template.content.querySelector('tr'));
      });
    });
  }

  function refreshMain() {
    return get(location.href, true).then(function (html) {
      document.getElementById('main').innerHTML = html;
    });
  }

  function tick() {
    var url = prefix + '/changes' + (cursor === null ? '' : '?since=' + cursor);
    get(url, false).then(function (answer) {
      var first = cursor === null;
      cursor = answer.cursor;
      body.setAttribute('data-cursor', String(cursor));
      if (first) { return; }
      var changed = answer.ids;
      if (changed !== null && !changed.length) { return; }
      if (live === 'rows') { return refreshRows(changed); }
      if (live === 'job' && changed !== null && changed.indexOf(body.getAttribute('data-job')) < 0) { return; }
      return refreshMain();
    }).catch(function () { /* the next tick tries again */ }).then(function () {
      setTimeout(tick, INTERVAL);
    });
  }
  tick();
}());
