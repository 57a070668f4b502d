'use strict';
// The admin's tag box (select2): a typed name that is not a tag is offered LAST, so that Enter picks the
// best existing match, and is sent as "new:NAME" so that the server never takes it for a tag's id.
{
    const select2 = django.jQuery.fn.select2;
    select2.defaults.set('insertTag', function(data, tag) { data.push(tag); });
    select2.defaults.set('createTag', function(params) {
        const name = params.term.trim().toLowerCase();
        return name ? {id: 'new:' + name, text: name + ' (new tag)', newTag: true} : null;
    });
}
